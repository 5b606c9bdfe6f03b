// Runs one hoistctl command against a ControlClient and writes its output.
#ifndef HOIST_CLI_COMMANDS_H_
#define HOIST_CLI_COMMANDS_H_

#include <ostream>

#include "cli/cli_options.h"
#include "cli/control_client.h"

namespace hoist::cli {

// Executes `options.command` (already validated by ParseCliOptions) and
// returns hoistctl's exit code (kExitOk, kExitFailed, kExitUnreachable).
// Results go to `out`, errors to `err`. `tty`: `out` is a terminal, so
// `watch` redraws a live view in place instead of appending lines.
int RunCommand(const CliOptions& options, ControlClient& client,
               std::ostream& out, std::ostream& err, bool tty);

}  // namespace hoist::cli

#endif  // HOIST_CLI_COMMANDS_H_
