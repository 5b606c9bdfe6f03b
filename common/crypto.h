// SHA-256, HMAC-SHA256 and constant-time comparison (OpenSSL).
#ifndef HOIST_COMMON_CRYPTO_H_
#define HOIST_COMMON_CRYPTO_H_

#include <string>

#include "absl/strings/string_view.h"

namespace hoist {

// Lowercase hex SHA-256 of `data`.
std::string Sha256Hex(absl::string_view data);

// Lowercase hex HMAC-SHA256 of `data` keyed with `key` (as JFrog signs
// payloads).
std::string HmacSha256Hex(absl::string_view key, absl::string_view data);

// Compares in time that depends only on the lengths, never on where the
// inputs first differ. Use for secrets and signatures.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

// Random hex string of `bytes` random bytes from OpenSSL's generator (for
// ids and tokens). Aborts the process, with a message on stderr, when the
// generator fails: an id that is not random may repeat (two rollouts, two
// outbox rows, two sessions under one id), and a process whose generator
// cannot be seeded has nothing safe to fall back to.
std::string RandomHex(int bytes);

}  // namespace hoist

#endif  // HOIST_COMMON_CRYPTO_H_
