// DashboardServer: the receiver's web dashboard (docs/design.md,
// "Dashboard"), served on `dashboard.listen` over HTTP or HTTPS.
//
// Pages render on the server (dashboard_render.h) and read the same state
// the Control API answers from: ServiceStates (fleet and service pages),
// RolloutController (rollouts, actions) and FleetView (agents). Every page
// has a JSON twin (`?format=json`, proto field names). Server-Sent Events add
// live updates: `/events` streams the fleet, `/rollouts/ID/events` one
// rollout. Sessions come from DashboardAuth (login with a token, cookie,
// CSRF token per session). The handlers only adapt HTTP to those calls.
#ifndef HOIST_RECEIVER_DASHBOARD_SERVER_H_
#define HOIST_RECEIVER_DASHBOARD_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "receiver/dashboard_auth.h"
#include "receiver/fleet_view.h"
#include "receiver/rollout_controller.h"
#include "receiver/service_states.h"

namespace hoist::receiver {

struct DashboardServerOptions {
  std::string listen;    // "host:port"; port 0 picks one
  std::string tls_cert;  // PEM files; both empty: plain HTTP
  std::string tls_key;
  // Not owned; must outlive the server.
  DashboardAuth* auth = nullptr;
  RolloutController* rollouts = nullptr;
  ServiceStates* services = nullptr;
  const FleetView* fleet = nullptr;
  // How often the fleet stream compares the fleet with what it last sent.
  absl::Duration fleet_poll = absl::Seconds(1);
  // Open event streams beyond this get 503 (each holds a server thread).
  int max_streams = 32;
};

class DashboardServer {
 public:
  // Binds and starts serving. InvalidArgument for a bad `listen` or
  // unreadable TLS files, Unavailable when it cannot bind.
  static absl::StatusOr<std::unique_ptr<DashboardServer>> Start(
      DashboardServerOptions options);
  ~DashboardServer();  // Stop()s

  // Ends open event streams and stops serving. Idempotent.
  void Stop();
  int port() const;

 private:
  class Impl;
  explicit DashboardServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_DASHBOARD_SERVER_H_
