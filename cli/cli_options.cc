#include "cli/cli_options.h"

#include <cstddef>
#include <map>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"

namespace hoist::cli {
namespace {

// Positional argument names per command, for validation and messages.
const std::map<std::string, std::vector<std::string>>& CommandArgs() {
  static const auto* const kArgs =
      new std::map<std::string, std::vector<std::string>>{
          {"agents", {}},
          {"rollouts", {}},
          {"rollout", {"ID"}},
          {"watch", {"ID"}},
          {"deploy", {"SERVICE", "DIGEST|TAG"}},
          {"rollback", {"SERVICE"}},
          {"resume", {"ID"}},
          {"services", {}},
          {"service", {"NAME"}},
          {"converge", {"SERVICE"}},
          {"cancel", {"ID"}},
          {"notify", {"test", "NAME"}},
      };
  return *kArgs;
}

absl::Status Usage(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

absl::Status ParsePositiveInt(const std::string& flag, const std::string& value,
                              int* out) {
  int parsed = 0;
  if (!absl::SimpleAtoi(value, &parsed) || parsed < 0) {
    return Usage(absl::StrCat(flag, " wants a non-negative integer, got \"",
                              value, "\""));
  }
  *out = parsed;
  return absl::OkStatus();
}

// What the flag loop gathers besides CliOptions' own fields.
struct ParsedArgs {
  std::vector<std::string> positional;  // the command and its arguments
  bool rollouts_flag_set = false;       // --service or --limit was given
};

// Flags that take a value (as the next argument or after '=').
bool TakesValue(const std::string& name) {
  static const char* const kValued[] = {
      "--server", "--ca",      "--cert",    "--key",   "--tls-name",
      "--output", "--timeout", "--service", "--limit", "-o"};
  for (const char* valued : kValued) {
    if (name == valued) return true;
  }
  return false;
}

absl::Status SetOutput(const std::string& value, CliOptions* options) {
  if (value == "text") {
    options->output = OutputFormat::kText;
  } else if (value == "json") {
    options->output = OutputFormat::kJson;
  } else {
    return Usage(
        absl::StrCat("--output must be text or json, got \"", value, "\""));
  }
  return absl::OkStatus();
}

// Sets the valued flag `name` (TakesValue() is true) to `value`.
absl::Status SetFlag(const std::string& name, const std::string& value,
                     CliOptions* options, ParsedArgs* parsed) {
  if (name == "--server") {
    options->server = value;
  } else if (name == "--ca") {
    options->ca = value;
  } else if (name == "--cert") {
    options->cert = value;
  } else if (name == "--key") {
    options->key = value;
  } else if (name == "--tls-name") {
    options->tls_name = value;
  } else if (name == "--output" || name == "-o") {
    return SetOutput(value, options);
  } else if (name == "--timeout") {
    HOIST_RETURN_IF_ERROR(
        ParsePositiveInt(name, value, &options->timeout_seconds));
    if (options->timeout_seconds == 0) {
      return Usage("--timeout must be at least 1");
    }
  } else if (name == "--service") {
    options->service = value;
    parsed->rollouts_flag_set = true;
  } else if (name == "--limit") {
    HOIST_RETURN_IF_ERROR(ParsePositiveInt(name, value, &options->limit));
    parsed->rollouts_flag_set = true;
  }
  return absl::OkStatus();
}

// Parses the flag at argv[*i] (`--flag value` or `--flag=value`); advances
// *i past a value taken from the next argument.
absl::Status ParseFlag(const std::vector<std::string>& argv, size_t* i,
                       CliOptions* options, ParsedArgs* parsed) {
  const std::string& arg = argv[*i];
  std::string name = arg;
  std::string value;
  bool has_value = false;
  if (const size_t eq = arg.find('='); eq != std::string::npos) {
    name = arg.substr(0, eq);
    value = arg.substr(eq + 1);
    has_value = true;
  }
  if (!TakesValue(name)) return Usage(absl::StrCat("unknown flag ", name));
  if (!has_value) {
    if (*i + 1 >= argv.size()) {
      return Usage(absl::StrCat(name, " needs a value"));
    }
    value = argv[++*i];
  }
  return SetFlag(name, value, options, parsed);
}

// The loop over argv: flags anywhere, the rest positional ("--" ends the
// flags; a lone "-" is positional).
absl::Status ParseArgs(const std::vector<std::string>& argv,
                       CliOptions* options, ParsedArgs* parsed) {
  for (size_t i = 1; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (arg == "-h" || arg == "--help") {
      options->help = true;
    } else if (arg == "--version") {
      options->version = true;
    } else if (arg == "--") {
      parsed->positional.insert(
          parsed->positional.end(),
          argv.begin() + static_cast<std::ptrdiff_t>(i + 1), argv.end());
      break;
    } else if (!absl::StartsWith(arg, "-") || arg == "-") {
      parsed->positional.push_back(arg);
    } else {
      HOIST_RETURN_IF_ERROR(ParseFlag(argv, &i, options, parsed));
    }
  }
  return absl::OkStatus();
}

// The usage line of `command`, e.g. "usage: hoistctl deploy SERVICE
// DIGEST|TAG", for a wrong number of arguments.
std::string CommandUsage(const std::string& command,
                         const std::vector<std::string>& arg_names) {
  return absl::StrCat(
      "usage: hoistctl ", command, arg_names.empty() ? "" : " ",
      absl::StrJoin(arg_names, " "),
      command == "rollouts" ? " [--service S] [--limit N]" : "");
}

absl::Status CheckDeployRef(const std::string& ref) {
  if (ref.empty()) return Usage("deploy: empty DIGEST|TAG");
  if (absl::StartsWith(ref, "sha256:") && !IsDigest(ref)) {
    return Usage(absl::StrCat(
        "deploy: \"", ref,
        "\" is not a digest (sha256: and 64 lowercase hex digits)"));
  }
  return absl::OkStatus();
}

// Sets the command and its arguments from `parsed` and checks them.
absl::Status SetCommand(const ParsedArgs& parsed, CliOptions* options) {
  if (parsed.positional.empty()) {
    return Usage("no command given (see --help)");
  }
  options->command = parsed.positional.front();
  options->args.assign(parsed.positional.begin() + 1, parsed.positional.end());
  const auto it = CommandArgs().find(options->command);
  if (it == CommandArgs().end()) {
    return Usage(absl::StrCat("unknown command \"", options->command,
                              "\" (see --help)"));
  }
  if (options->args.size() != it->second.size()) {
    return Usage(CommandUsage(options->command, it->second));
  }
  if (parsed.rollouts_flag_set && options->command != "rollouts") {
    return Usage("--service and --limit apply to `rollouts` only");
  }
  if (options->command == "deploy") {
    HOIST_RETURN_IF_ERROR(CheckDeployRef(options->args[1]));
  }
  if (options->command == "notify" && options->args[0] != "test") {
    return Usage(CommandUsage(options->command, it->second));
  }
  for (const std::string& a : options->args) {
    if (a.empty()) {
      return Usage(absl::StrCat(options->command, ": empty argument"));
    }
  }
  return absl::OkStatus();
}

// Connection settings: flags win over the environment; each is required.
absl::Status SetConnection(const EnvLookup& env, CliOptions* options) {
  struct Setting {
    std::string* field;
    const char* flag;
    const char* env;
  };
  const Setting settings[] = {{&options->server, "--server", "HOIST_SERVER"},
                              {&options->ca, "--ca", "HOIST_CA"},
                              {&options->cert, "--cert", "HOIST_CERT"},
                              {&options->key, "--key", "HOIST_KEY"}};
  for (const Setting& s : settings) {
    if (s.field->empty()) {
      const char* from_env = env ? env(s.env) : nullptr;
      if (from_env != nullptr) *s.field = from_env;
    }
    if (s.field->empty()) {
      return Usage(absl::StrCat("missing ", s.flag, " (or $", s.env, ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

bool IsDigest(const std::string& value) {
  if (!absl::StartsWith(value, "sha256:") || value.size() != 7 + 64)
    return false;
  for (size_t i = 7; i < value.size(); ++i) {
    const char c = value[i];
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

absl::StatusOr<CliOptions> ParseCliOptions(const std::vector<std::string>& argv,
                                           const EnvLookup& env) {
  CliOptions options;
  ParsedArgs parsed;
  HOIST_RETURN_IF_ERROR(ParseArgs(argv, &options, &parsed));
  if (options.help || options.version) return options;
  HOIST_RETURN_IF_ERROR(SetCommand(parsed, &options));
  HOIST_RETURN_IF_ERROR(SetConnection(env, &options));
  return options;
}

std::string UsageText() {
  return R"(hoistctl: operator CLI for Hoist's Control API (gRPC over mTLS).

Usage: hoistctl [flags] COMMAND [args]

Commands:
  agents                         configured agents, reachability and versions
  rollouts [--service S] [--limit N]
                                 rollouts, newest first
  rollout ID                     one rollout with its per-host results
  watch ID                       follow a rollout until it ends
                                 (exit 0 SUCCEEDED; 1 FAILED, ROLLED_BACK,
                                 SUPERSEDED, CANCELLED or PAUSED)
  deploy SERVICE DIGEST|TAG      manual deploy ("sha256:..." is a digest, else a tag)
  rollback SERVICE               each host back to its digest before the last
                                 successful rollout
  resume ID                      continue a PAUSED rollout
  cancel ID                      stop a PENDING, RUNNING or PAUSED rollout: no
                                 new host starts, hosts in flight finish
  services                       each service's desired digest, converge mode,
                                 active rollout and how many hosts are in sync
  service NAME                   one service: desired state and, per host,
                                 its convergence, running digest and retries
  converge SERVICE               converge the service's drifted hosts now
                                 (also after a cancel or hosts that gave up)
  notify test NAME               send a test message through the notify sink
                                 NAME (a `notify:` entry of receiver.yaml)

Flags (environment variable in brackets):
  --server HOST:PORT   Control API address            [HOIST_SERVER]
  --ca FILE            fleet CA certificate (PEM)     [HOIST_CA]
  --cert FILE          client certificate (PEM)       [HOIST_CERT]
  --key FILE           client key (PEM)               [HOIST_KEY]
  --tls-name NAME      verify the server as NAME instead of HOST
  --output text|json   json: proto field names (snake_case), like grpcurl;
                       `watch` prints one JSON RolloutEvent per line
  --timeout SECONDS    deadline of each call (default 30; watch: 6 hours)
  --help, --version

Exit codes:
  0 ok; 1 the operation failed (server error, or a watched rollout did not
  succeed); 2 usage; 3 cannot reach or authenticate to the server
  (UNAVAILABLE, UNAUTHENTICATED, PERMISSION_DENIED, DEADLINE_EXCEEDED).
)";
}

}  // namespace hoist::cli
