// A grpcurl-like client against the agent server over mTLS: server reflection
// lists the services, the NodeAgent descriptors come from reflection alone,
// and GetStatus is called with a generic stub and dynamic messages.
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/descriptor.pb.h"
#include "google/protobuf/descriptor_database.h"
#include "google/protobuf/dynamic_message.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "gtest/gtest.h"
#include "nodeagent/agent_server.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"
#include "tests/nodeagent/agent_test_util.h"
#include "tests/nodeagent/fake_agent_handler.h"

namespace hoist::nodeagent {
namespace {

namespace reflection = grpc::reflection::v1alpha;
namespace pb = google::protobuf;

class AgentReflectionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AgentServer::Options options;
    options.listen = "127.0.0.1:0";
    options.tls = HarnessTls("agent");
    options.handler = &handler_;
    options.authorizer = MakeAgentAuthorizer({"spiffe://hoist/receiver"},
                                             {"spiffe://hoist/viewer"});
    auto server = AgentServer::Start(std::move(options));
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  using ReflectionStream =
      grpc::ClientReaderWriter<reflection::ServerReflectionRequest,
                               reflection::ServerReflectionResponse>;

  // One request/response exchange on a reflection stream.
  static bool Ask(ReflectionStream* stream,
                  const reflection::ServerReflectionRequest& request,
                  reflection::ServerReflectionResponse* response) {
    return stream->Write(request) && stream->Read(response);
  }

  // The service names reflection lists.
  static std::set<std::string> ListServices(ReflectionStream* stream) {
    reflection::ServerReflectionRequest request;
    request.set_list_services("");
    reflection::ServerReflectionResponse response;
    std::set<std::string> services;
    EXPECT_TRUE(Ask(stream, request, &response));
    EXPECT_TRUE(response.has_list_services_response())
        << response.error_response().error_message();
    for (const auto& s : response.list_services_response().service()) {
      services.insert(s.name());
    }
    return services;
  }

  // Adds the file declaring `symbol` to `database`, then every dependency
  // the server did not send along, asked for by file name as grpcurl does.
  // Returns the names of the files added.
  static std::set<std::string> FetchFiles(ReflectionStream* stream,
                                          const std::string& symbol,
                                          pb::SimpleDescriptorDatabase* db) {
    std::set<std::string> have;
    std::vector<std::string> wanted;
    reflection::ServerReflectionRequest request;
    request.set_file_containing_symbol(symbol);
    for (int round = 0; round < 20; ++round) {
      reflection::ServerReflectionResponse response;
      if (!Ask(stream, request, &response)) break;
      AddFiles(response, db, &have, &wanted);
      while (!wanted.empty() && have.count(wanted.back())) wanted.pop_back();
      if (wanted.empty()) return have;
      request.set_file_by_filename(wanted.back());
      wanted.pop_back();
    }
    ADD_FAILURE() << "dependencies still wanted after 20 rounds";
    return have;
  }

  static void AddFiles(const reflection::ServerReflectionResponse& response,
                       pb::SimpleDescriptorDatabase* db,
                       std::set<std::string>* have,
                       std::vector<std::string>* wanted) {
    ASSERT_TRUE(response.has_file_descriptor_response())
        << response.error_response().error_message();
    for (const std::string& bytes :
         response.file_descriptor_response().file_descriptor_proto()) {
      pb::FileDescriptorProto file;
      ASSERT_TRUE(file.ParseFromString(bytes));
      if (!have->insert(file.name()).second) continue;
      for (const std::string& dep : file.dependency()) wanted->push_back(dep);
      ASSERT_TRUE(db->Add(file)) << file.name();
    }
  }

  // Calls `path` with `request_bytes` through a generic stub as `cert`;
  // the response's bytes in *response_bytes.
  grpc::Status GenericCall(const std::string& cert, const std::string& path,
                           const std::string& request_bytes,
                           std::string* response_bytes) {
    grpc::GenericStub generic(AgentChannelAs(server_->port(), cert));
    grpc::ClientContext context;
    SetDeadline(&context);
    grpc::Slice slice(request_bytes);
    grpc::ByteBuffer request_buffer(&slice, 1);
    grpc::ByteBuffer response_buffer;
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(&context, path, grpc::StubOptions(), &request_buffer,
                      &response_buffer, [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
    if (!done.WaitForNotificationWithTimeout(absl::Seconds(15))) {
      return grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "no answer");
    }
    std::vector<grpc::Slice> slices;
    if (status.ok() && response_buffer.Dump(&slices).ok()) {
      for (const grpc::Slice& s : slices) {
        response_bytes->append(reinterpret_cast<const char*>(s.begin()),
                               s.size());
      }
    }
    return status;
  }

  FakeAgentHandler handler_;
  std::unique_ptr<AgentServer> server_;
};

TEST_F(AgentReflectionTest,
       ListServicesThenCallGetStatusFromReflectedDescriptorsOnly) {
  // Reflection is open to any fleet certificate: the rogue one holds no role.
  auto reflection_stub = reflection::ServerReflection::NewStub(
      AgentChannelAs(server_->port(), "rogue"));
  grpc::ClientContext context;
  SetDeadline(&context);
  auto stream = reflection_stub->ServerReflectionInfo(&context);
  const std::set<std::string> services = ListServices(stream.get());
  EXPECT_EQ(services.count("hoist.v1.NodeAgent"), 1u);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1u);
  EXPECT_EQ(services.count("grpc.reflection.v1alpha.ServerReflection"), 1u);

  pb::SimpleDescriptorDatabase database;
  const std::set<std::string> files =
      FetchFiles(stream.get(), "hoist.v1.NodeAgent", &database);
  EXPECT_EQ(files.count("hoist/v1/agent.proto"), 1u);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());

  pb::DescriptorPool pool(&database);
  const pb::ServiceDescriptor* service =
      pool.FindServiceByName("hoist.v1.NodeAgent");
  ASSERT_NE(service, nullptr);
  const pb::MethodDescriptor* method = service->FindMethodByName("GetStatus");
  ASSERT_NE(method, nullptr);
  ASSERT_EQ(method->output_type()->file()->pool(),
            &pool);  // not the compiled-in descriptors
  for (const char* name :
       {"Deploy", "Rollback", "WatchDeploy", "ListContainers"}) {
    EXPECT_NE(service->FindMethodByName(name), nullptr) << name;
  }

  pb::DynamicMessageFactory factory(&pool);
  std::unique_ptr<pb::Message> request(
      factory.GetPrototype(method->input_type())->New());
  std::string request_bytes;
  ASSERT_TRUE(request->SerializeToString(&request_bytes));
  const std::string path = "/" + service->full_name() + "/" + method->name();
  EXPECT_EQ(path, "/hoist.v1.NodeAgent/GetStatus");

  // GetStatus needs a role: the rogue may not, the viewer may.
  std::string ignored;
  EXPECT_EQ(GenericCall("rogue", path, request_bytes, &ignored).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  std::string response_bytes;
  const grpc::Status status =
      GenericCall("viewer", path, request_bytes, &response_bytes);
  ASSERT_TRUE(status.ok()) << status.error_message();
  std::unique_ptr<pb::Message> response(
      factory.GetPrototype(method->output_type())->New());
  ASSERT_TRUE(response->ParseFromString(response_bytes));
  const pb::Descriptor* type = response->GetDescriptor();
  const pb::FieldDescriptor* host = type->FindFieldByName("host");
  const pb::FieldDescriptor* reachable =
      type->FindFieldByName("docker_reachable");
  ASSERT_NE(host, nullptr);
  ASSERT_NE(reachable, nullptr);
  EXPECT_EQ(response->GetReflection()->GetString(*response, host), "fake-host");
  EXPECT_TRUE(response->GetReflection()->GetBool(*response, reachable));
}

}  // namespace
}  // namespace hoist::nodeagent
