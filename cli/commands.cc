#include "cli/commands.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "cli/format.h"

namespace hoist::cli {
namespace {

// Reports a failed call and returns its exit code.
int Fail(const CliOptions& options, const absl::Status& status,
         std::ostream& err) {
  const int code = ExitCodeForStatus(status);
  err << "hoistctl " << options.command << ": "
      << absl::StatusCodeToString(status.code()) << ": " << status.message()
      << "\n";
  if (code == kExitUnreachable) {
    err << "hoistctl: cannot reach or authenticate to " << options.server
        << " (check --server, --ca, --cert, --key and that the certificate "
           "holds an allowed "
           "identity)\n";
  }
  return code;
}

// Prints `message` as JSON or through `text`; returns the exit code.
template <typename Message, typename TextFn>
int Print(const CliOptions& options, const Message& message, TextFn text,
          std::ostream& out, std::ostream& err) {
  if (options.output == OutputFormat::kJson) {
    absl::StatusOr<std::string> json = ToJson(message, /*pretty=*/true);
    if (!json.ok()) return Fail(options, json.status(), err);
    out << *json;
  } else {
    out << text(message);
  }
  out.flush();
  return kExitOk;
}

int PrintRolloutResult(const CliOptions& options,
                       const absl::StatusOr<hoist::v1::Rollout>& r,
                       std::ostream& out, std::ostream& err) {
  if (!r.ok()) return Fail(options, r.status(), err);
  const int code = Print(options, *r, FormatRollout, out, err);
  if (code == kExitOk && options.output == OutputFormat::kText &&
      !WatchStopsAt(r->state())) {
    out << "\nFollow it with: hoistctl watch " << r->id() << "\n";
  }
  return code;
}

// Prints a `watch` as its events arrive: one JSON RolloutEvent per line,
// the live view redrawn in place on a terminal, or the log lines otherwise.
class WatchPrinter {
 public:
  WatchPrinter(const CliOptions& options, std::ostream& out, bool tty)
      : options_(options), out_(out), tty_(tty) {}

  // Applies and prints one event. Returns whether to keep watching: false
  // once the rollout reached a state `watch` stops at, or when the event
  // could not be printed (json_error() says why).
  bool OnEvent(const hoist::v1::RolloutEvent& event) {
    std::vector<std::string> log_lines = view_.Apply(event);
    if (options_.output == OutputFormat::kJson) {
      absl::StatusOr<std::string> json = ToJson(event, /*pretty=*/false);
      if (!json.ok()) {
        json_error_ = std::string(json.status().message());
        return false;
      }
      out_ << *json << "\n";
    } else if (tty_) {
      Redraw();
    } else {
      for (const std::string& line : log_lines) out_ << line << "\n";
    }
    out_.flush();
    return !WatchStopsAt(view_.rollout().state());
  }

  const WatchView& view() const { return view_; }
  const std::string& json_error() const { return json_error_; }

 private:
  static constexpr int kBarWidth = 24;

  // Draws the live view over the one drawn before: up `drawn_` lines, then
  // each line cleared and rewritten.
  void Redraw() {
    if (drawn_ > 0) out_ << "\x1b[" << drawn_ << "A";
    const std::vector<std::string> screen = view_.Render(kBarWidth);
    for (const std::string& line : screen) {
      out_ << "\r\x1b[2K" << FitToTerminal(line) << "\n";
    }
    // Clear what is left of a longer previous screen, then come back.
    for (size_t i = screen.size(); i < drawn_; ++i) out_ << "\r\x1b[2K\n";
    if (drawn_ > screen.size()) {
      out_ << "\x1b[" << (drawn_ - screen.size()) << "A";
    }
    drawn_ = screen.size();
  }

  // A line wider than the terminal would wrap and break the cursor
  // arithmetic of Redraw(): cut it.
  std::string FitToTerminal(const std::string& line) const {
    const size_t columns = options_.terminal_columns;
    return columns > 1 && line.size() >= columns ? line.substr(0, columns - 1)
                                                 : line;
  }

  const CliOptions& options_;
  std::ostream& out_;
  const bool tty_;
  WatchView view_;
  size_t drawn_ = 0;  // lines of the live view currently on screen
  std::string json_error_;
};

// After the stream: exit code 0 for SUCCEEDED, 1 for any other end or a
// stream that ended before the rollout did; the text output names the end.
int FinishWatch(const CliOptions& options, const WatchView& view,
                std::ostream& out, std::ostream& err) {
  const hoist::v1::RolloutState state = view.rollout().state();
  if (!view.seen_any() || !WatchStopsAt(state)) {
    err << "hoistctl watch: the stream ended before rollout " << options.args[0]
        << " finished (state " << StateName(state) << ")\n";
    return kExitFailed;
  }
  if (options.output == OutputFormat::kText) {
    out << "rollout " << view.rollout().id() << " ended " << StateName(state);
    if (!view.rollout().error().empty()) out << ": " << view.rollout().error();
    out << "\n";
    if (state == hoist::v1::ROLLOUT_STATE_PAUSED) {
      out << "Continue it with: hoistctl resume " << view.rollout().id()
          << "\n";
    } else if (state == hoist::v1::ROLLOUT_STATE_CANCELLED) {
      // docs/design.md: hosts already changed keep what they run.
      out << "Hosts it changed keep what they run; see them with: "
             "hoistctl service "
          << view.rollout().service() << "\n";
    }
  }
  out.flush();
  return ExitCodeForRolloutState(state);
}

int Watch(const CliOptions& options, ControlClient& client, std::ostream& out,
          std::ostream& err, bool tty) {
  WatchPrinter printer(options, out, tty);
  const absl::Status status = client.WatchRollout(
      options.args[0], [&printer](const hoist::v1::RolloutEvent& event) {
        return printer.OnEvent(event);
      });
  if (!printer.json_error().empty()) {
    return Fail(options, absl::InternalError(printer.json_error()), err);
  }
  if (!status.ok()) return Fail(options, status, err);
  return FinishWatch(options, printer.view(), out, err);
}

// `service NAME`: the service, then a hint when convergence waits for an
// operator (on hold after a cancel, or hosts that gave up).
int ShowService(const CliOptions& options, ControlClient& client,
                std::ostream& out, std::ostream& err) {
  auto r = client.GetService(options.args[0]);
  if (!r.ok()) return Fail(options, r.status(), err);
  const int code = Print(options, *r, FormatService, out, err);
  bool gave_up = false;
  for (const hoist::v1::ServiceHost& h : r->hosts()) {
    gave_up |= h.convergence() == hoist::v1::CONVERGENCE_GAVE_UP;
  }
  if (code == kExitOk && options.output == OutputFormat::kText &&
      (r->on_hold() || gave_up)) {
    out << "\nConverge it now with: hoistctl converge " << r->name() << "\n";
  }
  return code;
}

int Deploy(const CliOptions& options, ControlClient& client, std::ostream& out,
           std::ostream& err) {
  hoist::v1::ManualDeployRequest request;
  request.set_service(options.args[0]);
  const std::string& ref = options.args[1];
  if (IsDigest(ref)) {
    request.set_digest(ref);
  } else {
    request.set_tag(ref);
  }
  return PrintRolloutResult(options, client.Deploy(request), out, err);
}

// `notify test NAME`: one test message through the sink, now.
int NotifyTest(const CliOptions& options, ControlClient& client,
               std::ostream& out, std::ostream& err) {
  auto r = client.TestNotification(options.args[1]);
  if (!r.ok()) return Fail(options, r.status(), err);
  return Print(options, *r, FormatTestNotification, out, err);
}

// The commands that read: agents, rollouts, rollout, services, service.
// Returns -1 for any other command.
int RunReadCommand(const CliOptions& options, ControlClient& client,
                   std::ostream& out, std::ostream& err) {
  const std::string& command = options.command;
  if (command == "agents") {
    auto r = client.ListAgents();
    if (!r.ok()) return Fail(options, r.status(), err);
    return Print(options, *r, FormatAgents, out, err);
  }
  if (command == "rollouts") {
    hoist::v1::ListRolloutsRequest request;
    request.set_service(options.service);
    request.set_limit(options.limit);
    auto r = client.ListRollouts(request);
    if (!r.ok()) return Fail(options, r.status(), err);
    return Print(options, *r, FormatRollouts, out, err);
  }
  if (command == "rollout") {
    auto r = client.GetRollout(options.args[0]);
    if (!r.ok()) return Fail(options, r.status(), err);
    return Print(options, *r, FormatRollout, out, err);
  }
  if (command == "services") {
    auto r = client.ListServices();
    if (!r.ok()) return Fail(options, r.status(), err);
    return Print(options, *r, FormatServices, out, err);
  }
  if (command == "service") return ShowService(options, client, out, err);
  return -1;
}

}  // namespace

int RunCommand(const CliOptions& options, ControlClient& client,
               std::ostream& out, std::ostream& err, bool tty) {
  if (const int code = RunReadCommand(options, client, out, err); code >= 0) {
    return code;
  }
  const std::string& command = options.command;
  const std::string arg = options.args.empty() ? "" : options.args[0];
  if (command == "watch") return Watch(options, client, out, err, tty);
  if (command == "deploy") return Deploy(options, client, out, err);
  if (command == "rollback") {
    return PrintRolloutResult(options, client.Rollback(arg), out, err);
  }
  if (command == "resume") {
    return PrintRolloutResult(options, client.Resume(arg), out, err);
  }
  if (command == "converge") {
    return PrintRolloutResult(options, client.Converge(arg), out, err);
  }
  if (command == "cancel") {
    return PrintRolloutResult(options, client.Cancel(arg), out, err);
  }
  if (command == "notify") return NotifyTest(options, client, out, err);
  err << "hoistctl: unknown command " << command << "\n";
  return kExitUsage;
}

}  // namespace hoist::cli
