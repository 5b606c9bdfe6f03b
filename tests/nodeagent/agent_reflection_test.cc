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

  // One request/response exchange on a reflection stream.
  static bool Ask(
      grpc::ClientReaderWriter<reflection::ServerReflectionRequest,
                               reflection::ServerReflectionResponse>* stream,
      const reflection::ServerReflectionRequest& request,
      reflection::ServerReflectionResponse* response) {
    return stream->Write(request) && stream->Read(response);
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

  reflection::ServerReflectionRequest list_request;
  list_request.set_list_services("");
  reflection::ServerReflectionResponse list_response;
  ASSERT_TRUE(Ask(stream.get(), list_request, &list_response));
  ASSERT_TRUE(list_response.has_list_services_response())
      << list_response.error_response().error_message();
  std::set<std::string> services;
  for (const auto& s : list_response.list_services_response().service())
    services.insert(s.name());
  EXPECT_EQ(services.count("hoist.v1.NodeAgent"), 1u);
  EXPECT_EQ(services.count("grpc.health.v1.Health"), 1u);
  EXPECT_EQ(services.count("grpc.reflection.v1alpha.ServerReflection"), 1u);

  // Fetch the file declaring hoist.v1.NodeAgent, then any dependency the
  // server did not send along, by file name.
  pb::SimpleDescriptorDatabase database;
  std::set<std::string> have;
  std::vector<std::string> wanted_files;
  auto add_files = [&](const reflection::ServerReflectionResponse& response) {
    ASSERT_TRUE(response.has_file_descriptor_response())
        << response.error_response().error_message();
    for (const std::string& bytes :
         response.file_descriptor_response().file_descriptor_proto()) {
      pb::FileDescriptorProto file;
      ASSERT_TRUE(file.ParseFromString(bytes));
      if (!have.insert(file.name()).second) continue;
      for (const std::string& dep : file.dependency())
        wanted_files.push_back(dep);
      ASSERT_TRUE(database.Add(file)) << file.name();
    }
  };
  reflection::ServerReflectionRequest symbol_request;
  symbol_request.set_file_containing_symbol("hoist.v1.NodeAgent");
  reflection::ServerReflectionResponse symbol_response;
  ASSERT_TRUE(Ask(stream.get(), symbol_request, &symbol_response));
  add_files(symbol_response);
  for (int round = 0; round < 20 && !wanted_files.empty(); ++round) {
    const std::string name = wanted_files.back();
    wanted_files.pop_back();
    if (have.count(name)) continue;
    reflection::ServerReflectionRequest file_request;
    file_request.set_file_by_filename(name);
    reflection::ServerReflectionResponse file_response;
    ASSERT_TRUE(Ask(stream.get(), file_request, &file_response));
    add_files(file_response);
  }
  EXPECT_TRUE(wanted_files.empty());
  EXPECT_EQ(have.count("hoist/v1/agent.proto"), 1u);
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

  // GetStatus needs a role: the viewer may, the rogue may not.
  for (const std::string cert : {"viewer", "rogue"}) {
    grpc::GenericStub generic(AgentChannelAs(server_->port(), cert));
    grpc::ClientContext call_context;
    SetDeadline(&call_context);
    grpc::Slice slice(request_bytes);
    grpc::ByteBuffer request_buffer(&slice, 1);
    grpc::ByteBuffer response_buffer;
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(&call_context, path, grpc::StubOptions(), &request_buffer,
                      &response_buffer, [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(15)));
    if (cert == "rogue") {
      EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
      continue;
    }
    ASSERT_TRUE(status.ok()) << status.error_message();
    std::vector<grpc::Slice> slices;
    ASSERT_TRUE(response_buffer.Dump(&slices).ok());
    std::string response_bytes;
    for (const grpc::Slice& s : slices) {
      response_bytes.append(reinterpret_cast<const char*>(s.begin()), s.size());
    }
    std::unique_ptr<pb::Message> response(
        factory.GetPrototype(method->output_type())->New());
    ASSERT_TRUE(response->ParseFromString(response_bytes));
    const pb::FieldDescriptor* host =
        response->GetDescriptor()->FindFieldByName("host");
    ASSERT_NE(host, nullptr);
    EXPECT_EQ(response->GetReflection()->GetString(*response, host),
              "fake-host");
    const pb::FieldDescriptor* reachable =
        response->GetDescriptor()->FindFieldByName("docker_reachable");
    ASSERT_NE(reachable, nullptr);
    EXPECT_TRUE(response->GetReflection()->GetBool(*response, reachable));
  }
}

}  // namespace
}  // namespace hoist::nodeagent
