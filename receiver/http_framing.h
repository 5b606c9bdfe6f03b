// HTTP/1.1 request framing for EventHttpServer (receiver/event_http_server.h),
// without I/O: finding where a request's head ends, parsing the head, and
// decoding a chunked body, each incrementally so that the bytes of a request
// are looked at a bounded number of times however they are split across
// reads (a request sent one byte at a time costs as much as one sent whole).
//
// Limits (docs/design.md, "Webhook connections"): a head of at most
// kMaxHeadBytes (431 beyond), at most kMaxHeaderFields header fields (431),
// a request target of at most kMaxTargetBytes (414). Everything here is
// plain data and pure functions; each object is used by one thread at a time.
#ifndef HOIST_RECEIVER_HTTP_FRAMING_H_
#define HOIST_RECEIVER_HTTP_FRAMING_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace hoist::receiver {

inline constexpr size_t kMaxHeadBytes = size_t{64} * 1024;
inline constexpr size_t kMaxHeaderFields = 100;
inline constexpr size_t kMaxTargetBytes = size_t{8} * 1024;

// Finds the end of a request head (the empty line after the header lines)
// in a buffer that grows between calls. Each byte is examined once.
class HeadScanner {
 public:
  // `request` holds the request's bytes from its first one (the buffer may
  // have moved since the last call; only its contents matter). Returns the
  // head's length including the empty line, or 0 while it is incomplete.
  // A line ends with LF, optionally preceded by CR.
  size_t Scan(absl::string_view request);
  void Reset() { *this = HeadScanner(); }
  // Bytes examined by Scan() since construction or Reset(): at most the
  // head's length however the bytes were split (a head re-scanned from its
  // start on every read would make a trickled head cost its square).
  size_t examined() const { return examined_; }

 private:
  size_t scanned_ = 0;     // request[0, scanned_) has been examined
  size_t line_start_ = 0;  // where the line being scanned starts
  size_t examined_ = 0;
};

struct HeaderField {
  absl::string_view name;
  absl::string_view value;  // without surrounding spaces and tabs
};

// A parsed request head. The views point into the buffer passed to
// ParseRequestHead() and are valid as long as it is unchanged.
struct RequestHead {
  absl::string_view method;
  absl::string_view target;  // as sent
  absl::string_view path;    // target up to '?' (not percent-decoded)
  int minor_version = 1;     // HTTP/1.<minor_version>
  std::vector<HeaderField> fields;

  // Framing, from the fields.
  bool has_content_length = false;
  uint64_t content_length = 0;
  bool chunked = false;          // Transfer-Encoding: chunked
  bool expect_continue = false;  // Expect: 100-continue
  // The connection may carry another request after this one (HTTP/1.1
  // without "Connection: close", HTTP/1.0 with "Connection: keep-alive").
  bool keep_alive = true;

  // Whether a body follows the head (chunked, or a non-zero length).
  bool HasBody() const {
    return chunked || (has_content_length && content_length > 0);
  }
  // The first field named `name` (any case); nullptr when absent.
  const HeaderField* Find(absl::string_view name) const;
};

// Why a head cannot be served: the HTTP status to answer (then close) and a
// reason for the error body.
struct HeadError {
  int status = 0;  // 0: none
  const char* reason = "";
};

// Parses `head` (a request line and header lines up to and including the
// empty line, as HeadScanner delimited it) into `*out`, reusing its field
// storage. Refuses, with the status to answer: a malformed request line or
// header field (400), a version other than HTTP/1.x (505), a target over
// kMaxTargetBytes (414), more than kMaxHeaderFields fields (431), an
// unreadable or repeated Content-Length, and Content-Length together with
// Transfer-Encoding (400, as request smuggling relies on them), a
// Transfer-Encoding other than "chunked" (501).
HeadError ParseRequestHead(absl::string_view head, RequestHead* out);

// `path` with %XX escapes decoded (as clients may escape any character);
// `path` itself when it has none. A malformed escape is kept as is.
std::string PercentDecodePath(absl::string_view path);

// Decodes a chunked body as its bytes arrive (RFC 9112, section 7.1):
// chunk sizes in hex, optional extensions (ignored), data, and trailer
// fields (ignored). Each byte is examined once.
class ChunkedDecoder {
 public:
  enum class Result {
    kNeedMore,  // every byte given was consumed; the body goes on
    kDone,      // the body ended; `*consumed` bytes of input were its last
    kTooLarge,  // the decoded body would exceed `max_body`
    kMalformed,
  };

  // Consumes bytes of `input` (the raw bytes after those consumed so far),
  // appending decoded data to `*body`, which holds at most `max_body` bytes.
  // `*consumed` is how many bytes of `input` were used.
  Result Feed(absl::string_view input, size_t max_body, std::string* body,
              size_t* consumed);
  void Reset() { *this = ChunkedDecoder(); }

 private:
  enum class State {
    kSize,       // hex digits of a chunk size
    kExtension,  // after the size, up to the end of the line
    kSizeLf,     // CR seen after a size line
    kData,       // `remaining_` data bytes to go
    kDataCr,     // CRLF after data
    kDataLf,
    kTrailer,    // trailer lines, up to an empty one
    kTrailerLf,  // CR seen in a trailer line
  };
  static constexpr size_t kMaxLineBytes = 4096;     // of an extension
  static constexpr size_t kMaxTrailerBytes = 8192;  // of all trailers
  // Handles one byte of a size, extension or trailer line (not kData).
  Result Step(char c, size_t max_body, const std::string& body);
  Result SizeByte(char c, size_t max_body, const std::string& body);
  Result TrailerByte(char c);
  Result EndOfSizeLine(size_t max_body, const std::string& body);

  State state_ = State::kSize;
  uint64_t remaining_ = 0;  // chunk size being read, then bytes left
  int size_digits_ = 0;
  size_t line_bytes_ = 0;     // of the current extension or trailer line
  size_t trailer_bytes_ = 0;  // of all trailer lines
};

}  // namespace hoist::receiver

#endif  // HOIST_RECEIVER_HTTP_FRAMING_H_
