#include "receiver/dashboard_auth.h"

#include <openssl/rand.h>

#include <algorithm>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crypto.h"
#include "common/file_util.h"

namespace hoist::receiver {
namespace {

constexpr int kSecretBytes = 32;
constexpr size_t kSha256HexLength = 64;

absl::Status LineError(absl::string_view path, int line,
                       absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(path, ":", line, ": ", why));
}

bool IsLowercaseSha256Hex(absl::string_view hex) {
  return hex.size() == kSha256HexLength &&
         std::all_of(hex.begin(), hex.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// One non-blank, non-comment line: NAME ROLE HEX.
absl::StatusOr<DashboardToken> ParseTokenLine(absl::string_view text, int line,
                                              absl::string_view path) {
  const std::vector<absl::string_view> fields =
      absl::StrSplit(text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 3) {
    return LineError(path, line,
                     absl::StrCat("want NAME ROLE SHA256HEX, got ",
                                  fields.size(), " fields"));
  }
  DashboardToken token;
  token.name = std::string(fields[0]);
  token.line = line;
  if (fields[1] == "viewer") {
    token.role = DashboardRole::kViewer;
  } else if (fields[1] == "operator") {
    token.role = DashboardRole::kOperator;
  } else {
    return LineError(path, line,
                     absl::StrCat("unknown role \"", absl::CEscape(fields[1]),
                                  "\" (want viewer or operator)"));
  }
  // Never echo this field: it may be the secret itself, pasted by mistake.
  if (!IsLowercaseSha256Hex(fields[2])) {
    return LineError(path, line,
                     "token hash must be 64 lowercase hex characters (the "
                     "SHA-256 of the token)");
  }
  token.sha256_hex = std::string(fields[2]);
  return token;
}

// 32 bytes from OpenSSL's CSPRNG, hex. Never falls back to weaker bytes.
absl::StatusOr<std::string> RandomSecretHex() {
  unsigned char buf[kSecretBytes];
  if (RAND_bytes(buf, sizeof(buf)) != 1) {
    return absl::InternalError("RAND_bytes failed; cannot open a session");
  }
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(buf), sizeof(buf)));
}

}  // namespace

absl::string_view DashboardRoleName(DashboardRole role) {
  switch (role) {
    case DashboardRole::kViewer:
      return "viewer";
    case DashboardRole::kOperator:
      return "operator";
  }
  return "unknown";
}

absl::StatusOr<std::vector<DashboardToken>> ParseDashboardTokens(
    absl::string_view text, absl::string_view path) {
  std::vector<DashboardToken> tokens;
  absl::flat_hash_map<std::string, int> line_of_name;
  absl::flat_hash_map<std::string, size_t> index_of_hash;  // into `tokens`
  int line = 0;
  for (absl::string_view raw : absl::StrSplit(text, '\n')) {
    ++line;
    const absl::string_view stripped = absl::StripAsciiWhitespace(raw);
    if (stripped.empty() || stripped.front() == '#') continue;
    absl::StatusOr<DashboardToken> token = ParseTokenLine(stripped, line, path);
    if (!token.ok()) return token.status();
    auto [name_it, new_name] = line_of_name.emplace(token->name, line);
    if (!new_name) {
      return LineError(
          path, line,
          absl::StrCat("duplicate name \"", absl::CEscape(token->name),
                       "\" (first on line ", name_it->second, ")"));
    }
    auto [hash_it, new_hash] =
        index_of_hash.emplace(token->sha256_hex, tokens.size());
    if (!new_hash) {
      const DashboardToken& first = tokens[hash_it->second];
      return LineError(path, line,
                       absl::StrCat("duplicate token hash (same as \"",
                                    absl::CEscape(first.name), "\" on line ",
                                    first.line, ")"));
    }
    tokens.push_back(*std::move(token));
  }
  return tokens;
}

absl::StatusOr<std::vector<DashboardToken>> LoadDashboardTokens(
    const std::string& path) {
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  return ParseDashboardTokens(*text, path);
}

DashboardAuth::DashboardAuth(DashboardAuthOptions options)
    : options_(options),
      clock_(options_.clock != nullptr ? options_.clock : RealClock()) {}

void DashboardAuth::SetTokens(std::vector<DashboardToken> tokens) {
  absl::MutexLock lock(&mu_);
  tokens_ = std::move(tokens);
  absl::flat_hash_map<absl::string_view, const DashboardToken*> by_name;
  for (const DashboardToken& token : tokens_) by_name[token.name] = &token;
  std::vector<std::string> dead;
  for (const auto& [key, stored] : sessions_) {
    auto it = by_name.find(stored.session.name);
    const bool still_valid = it != by_name.end() &&
                             it->second->role == stored.session.role &&
                             it->second->sha256_hex == stored.token_sha256_hex;
    if (!still_valid) dead.push_back(key);
  }
  for (const std::string& key : dead) EraseSessionLocked(key);
}

absl::StatusOr<DashboardSession> DashboardAuth::Login(absl::string_view token,
                                                      absl::string_view ip) {
  const std::string sha256_hex = Sha256Hex(token);
  const std::string ip_key(ip);
  absl::MutexLock lock(&mu_);
  const absl::Time now = clock_->Now();
  PruneFailuresLocked(now);
  absl::Status limited = CheckLimitLocked(ip_key, now);
  if (!limited.ok()) return limited;
  const DashboardToken* match = MatchTokenLocked(sha256_hex);
  if (match == nullptr || token.empty()) {
    RecordFailureLocked(ip_key, now);
    return absl::UnauthenticatedError("unknown token");
  }
  failures_.erase(ip_key);  // its failure_order_ entry is now stale
  return OpenSessionLocked(*match, now);
}

absl::StatusOr<DashboardSession> DashboardAuth::Lookup(
    absl::string_view session_id) {
  const std::string key = Sha256Hex(session_id);
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return absl::NotFoundError("no such session");
  if (it->second.session.expires <= clock_->Now()) {
    EraseSessionLocked(key);
    return absl::NotFoundError("session expired");
  }
  return it->second.session;
}

void DashboardAuth::Logout(absl::string_view session_id) {
  const std::string key = Sha256Hex(session_id);
  absl::MutexLock lock(&mu_);
  EraseSessionLocked(key);
}

bool DashboardAuth::CsrfMatches(const DashboardSession& session,
                                absl::string_view csrf) {
  if (csrf.empty() || session.csrf.empty()) return false;
  return ConstantTimeEquals(session.csrf, csrf);
}

size_t DashboardAuth::session_count() {
  absl::MutexLock lock(&mu_);
  PruneSessionsLocked(clock_->Now());
  return sessions_.size();
}

size_t DashboardAuth::tracked_ip_count() {
  absl::MutexLock lock(&mu_);
  PruneFailuresLocked(clock_->Now());
  return failures_.size();
}

absl::Status DashboardAuth::CheckLimitLocked(const std::string& ip,
                                             absl::Time now) {
  auto it = failures_.find(ip);
  if (it == failures_.end()) return absl::OkStatus();
  const absl::Time window_end = it->second.window_start + options_.login_window;
  if (window_end <= now) return absl::OkStatus();  // pruned on the next record
  if (it->second.count < std::max(1, options_.login_failures_per_window)) {
    return absl::OkStatus();
  }
  const int64_t wait_s = std::max<int64_t>(
      1, absl::ToInt64Seconds(absl::Ceil(window_end - now, absl::Seconds(1))));
  return absl::ResourceExhaustedError(
      absl::StrCat("too many failed logins; try again in ", wait_s, " s"));
}

void DashboardAuth::RecordFailureLocked(const std::string& ip, absl::Time now) {
  Failures& failures = failures_[ip];
  if (failures.count == 0 ||
      failures.window_start + options_.login_window <= now) {
    failures = Failures{now, 0};
    failure_order_.emplace_back(now, ip);
  }
  ++failures.count;
  PruneFailuresLocked(now);
}

void DashboardAuth::PruneFailuresLocked(absl::Time now) {
  const size_t cap = static_cast<size_t>(std::max(1, options_.max_tracked_ips));
  while (!failure_order_.empty()) {
    const auto& [window_start, ip] = failure_order_.front();
    const bool expired = window_start + options_.login_window <= now;
    if (!expired && failure_order_.size() <= cap) break;
    auto it = failures_.find(ip);
    // Only the entry that opened the IP's current window may erase it.
    if (it != failures_.end() && it->second.window_start == window_start) {
      failures_.erase(it);
    }
    failure_order_.pop_front();
  }
}

const DashboardToken* DashboardAuth::MatchTokenLocked(
    const std::string& sha256_hex) const {
  const DashboardToken* match = nullptr;
  // No early exit: every entry costs the same whichever one matches.
  for (const DashboardToken& token : tokens_) {
    if (ConstantTimeEquals(sha256_hex, token.sha256_hex)) match = &token;
  }
  return match;
}

absl::StatusOr<DashboardSession> DashboardAuth::OpenSessionLocked(
    const DashboardToken& token, absl::Time now) {
  absl::StatusOr<std::string> id = RandomSecretHex();
  if (!id.ok()) return id.status();
  absl::StatusOr<std::string> csrf = RandomSecretHex();
  if (!csrf.ok()) return csrf.status();
  StoredSession stored;
  stored.session.id = *std::move(id);
  stored.session.csrf = *std::move(csrf);
  stored.session.name = token.name;
  stored.session.role = token.role;
  stored.session.expires = now + options_.session_ttl;
  stored.token_sha256_hex = token.sha256_hex;
  stored.expiry_key = {stored.session.expires, next_session_seq_++};
  const std::string key = Sha256Hex(stored.session.id);
  sessions_by_expiry_.emplace(stored.expiry_key, key);
  DashboardSession session = stored.session;
  sessions_.insert_or_assign(key, std::move(stored));
  PruneSessionsLocked(now);
  return session;
}

void DashboardAuth::PruneSessionsLocked(absl::Time now) {
  const size_t cap = static_cast<size_t>(std::max(1, options_.max_sessions));
  while (!sessions_by_expiry_.empty()) {
    const auto& [expiry_key, key] = *sessions_by_expiry_.begin();
    if (expiry_key.first > now && sessions_.size() <= cap) break;
    sessions_.erase(key);
    sessions_by_expiry_.erase(sessions_by_expiry_.begin());
  }
}

void DashboardAuth::EraseSessionLocked(const std::string& key) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  sessions_by_expiry_.erase(it->second.expiry_key);
  sessions_.erase(it);
}

}  // namespace hoist::receiver
