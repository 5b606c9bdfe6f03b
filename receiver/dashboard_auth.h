// Authentication for the receiver's dashboard (docs/design.md, "Dashboard"):
// the tokens file, logins, sessions and the failed-login limiter.
//
// The tokens file holds one line per person or robot, `NAME ROLE HEX`, where
// HEX is the lowercase hex SHA-256 of the secret token, so the file never
// holds a usable secret. Lines starting with `#` and blank lines are ignored.
// Roles are `viewer` (read only) and `operator` (may act). The daemon re-reads
// the file on SIGHUP: it calls LoadDashboardTokens again and hands the result
// to DashboardAuth::SetTokens; a file that does not parse leaves the old list.
//
// A login (POST /login, form field `token`) checks the typed token against
// every entry in constant time and, on success, opens a session: the cookie
// value (`id`) and a separate CSRF token, both 256 random bits. The HTTP layer
// sets the cookie HttpOnly, SameSite=Strict (and Secure under TLS), requires
// the CSRF token on every action and the operator role for actions. Failed
// logins are limited per client IP.
#ifndef HOIST_RECEIVER_DASHBOARD_AUTH_H_
#define HOIST_RECEIVER_DASHBOARD_AUTH_H_

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/clock.h"

namespace hoist::receiver {

enum class DashboardRole { kViewer, kOperator };

// "viewer" / "operator", as written in the tokens file.
absl::string_view DashboardRoleName(DashboardRole role);

// One line of the tokens file.
struct DashboardToken {
  std::string name;  // NAME: who logs in with this token (shown, journaled)
  DashboardRole role = DashboardRole::kViewer;
  std::string sha256_hex;  // 64 lowercase hex characters
  int line = 0;            // 1-based line in the file
};

// Parses a tokens file's text. Errors are INVALID_ARGUMENT
// "PATH:LINE: why" for the first bad line: wrong field count, unknown role,
// HEX not 64 lowercase hex characters, a NAME or a HEX already used on an
// earlier line. Messages never repeat the HEX field (someone may have pasted
// the secret itself there). `path` is only used in messages. An empty file
// (or one with only comments) gives an empty list: nobody can log in.
absl::StatusOr<std::vector<DashboardToken>> ParseDashboardTokens(
    absl::string_view text, absl::string_view path);

// Reads and parses `path`. NOT_FOUND / PERMISSION_DENIED / INTERNAL naming the
// path when it cannot be read; otherwise as ParseDashboardTokens.
absl::StatusOr<std::vector<DashboardToken>> LoadDashboardTokens(
    const std::string& path);

// A logged-in browser.
struct DashboardSession {
  std::string id;    // cookie value: 32 random bytes, hex
  std::string csrf;  // 32 random bytes, hex, independent of `id`
  std::string name;  // the token's NAME
  DashboardRole role = DashboardRole::kViewer;
  absl::Time expires;  // the session is dead from this instant on
};

struct DashboardAuthOptions {
  absl::Duration session_ttl = absl::Hours(12);
  int max_sessions = 10000;           // oldest evicted beyond this (min 1)
  int login_failures_per_window = 5;  // per client IP (min 1)
  // A client IP's window opens at its first failed login; once it has passed,
  // that IP starts again from zero failures.
  absl::Duration login_window = absl::Minutes(1);
  // Client IPs with failures remembered at once. Beyond this the IP whose
  // window opened first is forgotten, so memory stays bounded under a flood
  // from many addresses.
  int max_tracked_ips = 100000;  // min 1
  Clock* clock = nullptr;        // nullptr: RealClock()
};

// Holds the token list, the sessions and the failed-login counters, all in
// memory (sessions do not survive a restart). Thread-safe.
class DashboardAuth {
 public:
  explicit DashboardAuth(DashboardAuthOptions options = {});

  DashboardAuth(const DashboardAuth&) = delete;
  DashboardAuth& operator=(const DashboardAuth&) = delete;

  // Replaces the token list (SIGHUP). Sessions whose token NAME is gone, whose
  // role changed or whose HEX changed (the token was rotated, perhaps because
  // it leaked) are dropped; the others live on unchanged.
  void SetTokens(std::vector<DashboardToken> tokens);

  // Checks `token` (the secret as typed) for client `ip`: hashes it and
  // compares the hash with every entry in constant time. On success opens a
  // session, clears `ip`'s failures (only its own) and returns the session.
  // Errors:
  // - RESOURCE_EXHAUSTED "too many failed logins; try again in N s" when `ip`
  //   already has login_failures_per_window failures in its window. Checked
  //   before the token, so a limited client learns nothing, even with the
  //   right token; this attempt does not count as another failure.
  // - UNAUTHENTICATED "unknown token" (also for an empty token); counts a
  //   failure for `ip`.
  // - INTERNAL when the system's random generator fails (no session opened).
  absl::StatusOr<DashboardSession> Login(absl::string_view token,
                                         absl::string_view ip);

  // The live session whose cookie value is `session_id`. NOT_FOUND when there
  // is none or it expired (an expired session is erased).
  absl::StatusOr<DashboardSession> Lookup(absl::string_view session_id);

  // Ends the session `session_id`; unknown ids are ignored.
  void Logout(absl::string_view session_id);

  // True when `csrf` equals the session's CSRF token, compared in constant
  // time. False when either is empty.
  static bool CsrfMatches(const DashboardSession& session,
                          absl::string_view csrf);

  // Live sessions (expired ones are erased first).
  size_t session_count();
  // Client IPs whose failed logins are currently remembered (expired windows
  // are forgotten first).
  size_t tracked_ip_count();

 private:
  // Orders sessions by expiry, then by opening order (ties under a clock
  // that did not move).
  using ExpiryKey = std::pair<absl::Time, uint64_t>;
  struct StoredSession {
    DashboardSession session;
    std::string token_sha256_hex;  // the entry it logged in with
    ExpiryKey expiry_key;
  };
  struct Failures {
    absl::Time window_start;
    int count = 0;
  };

  // RESOURCE_EXHAUSTED when `ip` is over the limit at `now`.
  absl::Status CheckLimitLocked(const std::string& ip, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RecordFailureLocked(const std::string& ip, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Forgets failure windows that ended by `now`, then the oldest ones beyond
  // max_tracked_ips.
  void PruneFailuresLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The entry whose hash equals `sha256_hex`, or nullptr. Looks at every entry.
  const DashboardToken* MatchTokenLocked(const std::string& sha256_hex) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::StatusOr<DashboardSession> OpenSessionLocked(
      const DashboardToken& token, absl::Time now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Erases sessions expired by `now`, then the oldest beyond max_sessions.
  void PruneSessionsLocked(absl::Time now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EraseSessionLocked(const std::string& key)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const DashboardAuthOptions options_;
  Clock* const clock_;

  absl::Mutex mu_;
  std::vector<DashboardToken> tokens_ ABSL_GUARDED_BY(mu_);
  // Keyed by the SHA-256 of the cookie value, so the map's own comparisons
  // cannot time-leak a prefix of a live session id.
  absl::flat_hash_map<std::string, StoredSession> sessions_
      ABSL_GUARDED_BY(mu_);
  // Every session's key in sessions_, by expiry: the first one expires (and,
  // as the TTL is fixed, was opened) first.
  std::map<ExpiryKey, std::string> sessions_by_expiry_ ABSL_GUARDED_BY(mu_);
  uint64_t next_session_seq_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_map<std::string, Failures> failures_ ABSL_GUARDED_BY(mu_);
  // (window_start, ip) in the order windows opened. An entry is stale when
  // failures_[ip] is gone or opened a later window.
  std::deque<std::pair<absl::Time, std::string>> failure_order_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_DASHBOARD_AUTH_H_
