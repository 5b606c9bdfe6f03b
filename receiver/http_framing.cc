#include "receiver/http_framing.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"

namespace hoist::receiver {
namespace {

// RFC 9110 "tchar": the characters of a method or a field name.
bool IsTokenChar(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsToken(absl::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// The value of a hex digit (0-9, a-f, A-F).
int HexValue(char c) {
  return absl::ascii_isdigit(static_cast<unsigned char>(c))
             ? c - '0'
             : absl::ascii_tolower(static_cast<unsigned char>(c)) - 'a' + 10;
}

absl::string_view StripOws(absl::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// The next line of `*rest` without its LF (and CR), consumed from it.
absl::string_view NextLine(absl::string_view* rest) {
  const size_t lf = rest->find('\n');
  absl::string_view line = rest->substr(0, lf);
  rest->remove_prefix(lf == absl::string_view::npos ? rest->size() : lf + 1);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// The path of an origin-form ("/a?b") or absolute-form
// ("http://host/a?b") target, up to '?'; empty when it is neither.
absl::string_view PathOf(absl::string_view target) {
  if (target.empty()) return {};
  if (target[0] != '/') {
    const size_t scheme = target.find("://");
    if (scheme == absl::string_view::npos) return {};
    const size_t slash = target.find('/', scheme + 3);
    if (slash == absl::string_view::npos) return "/";
    target.remove_prefix(slash);
  }
  return target.substr(0, target.find('?'));
}

HeadError ParseRequestLine(absl::string_view line, RequestHead* out) {
  const size_t sp1 = line.find(' ');
  const size_t sp2 =
      sp1 == absl::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == absl::string_view::npos) return {400, "malformed request line"};
  out->method = line.substr(0, sp1);
  out->target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const absl::string_view version = line.substr(sp2 + 1);
  if (!IsToken(out->method) || out->target.empty()) {
    return {400, "malformed request line"};
  }
  if (out->target.size() > kMaxTargetBytes) {
    return {414, "request target too long"};
  }
  for (char c : out->target) {
    if (absl::ascii_iscntrl(static_cast<unsigned char>(c)) || c == ' ') {
      return {400, "malformed request target"};
    }
  }
  out->path = PathOf(out->target);
  if (out->path.empty()) return {400, "malformed request target"};
  if (version.size() != 8 || !absl::StartsWith(version, "HTTP/") ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[5])) ||
      version[6] != '.' ||
      !absl::ascii_isdigit(static_cast<unsigned char>(version[7]))) {
    return {400, "malformed HTTP version"};
  }
  if (version[5] != '1') return {505, "only HTTP/1.x is served"};
  out->minor_version = version[7] - '0';
  out->keep_alive = out->minor_version >= 1;
  return {};
}

// Applies one field that decides framing or persistence.
HeadError ApplyField(const HeaderField& field, RequestHead* out) {
  if (absl::EqualsIgnoreCase(field.name, "Content-Length")) {
    const bool digits =
        !field.value.empty() &&
        std::all_of(field.value.begin(), field.value.end(), [](char c) {
          return absl::ascii_isdigit(static_cast<unsigned char>(c));
        });
    if (out->has_content_length || !digits ||
        !absl::SimpleAtoi(field.value, &out->content_length)) {
      return {400, "bad Content-Length"};
    }
    out->has_content_length = true;
  } else if (absl::EqualsIgnoreCase(field.name, "Transfer-Encoding")) {
    if (out->chunked) return {400, "repeated Transfer-Encoding"};
    if (!absl::EqualsIgnoreCase(field.value, "chunked")) {
      return {501, "only Transfer-Encoding: chunked is supported"};
    }
    out->chunked = true;
  } else if (absl::EqualsIgnoreCase(field.name, "Expect")) {
    out->expect_continue = absl::EqualsIgnoreCase(field.value, "100-continue");
  } else if (absl::EqualsIgnoreCase(field.name, "Connection")) {
    for (absl::string_view option : absl::StrSplit(field.value, ',')) {
      option = StripOws(option);
      if (absl::EqualsIgnoreCase(option, "close")) {
        out->keep_alive = false;
      } else if (absl::EqualsIgnoreCase(option, "keep-alive") &&
                 out->minor_version == 0) {
        out->keep_alive = true;
      }
    }
  }
  return {};
}

HeadError ParseField(absl::string_view line, RequestHead* out) {
  if (line[0] == ' ' || line[0] == '\t') {
    return {400, "folded header lines are not accepted"};
  }
  const size_t colon = line.find(':');
  if (colon == absl::string_view::npos || !IsToken(line.substr(0, colon))) {
    return {400, "malformed header field"};
  }
  HeaderField field{line.substr(0, colon), StripOws(line.substr(colon + 1))};
  for (char c : field.value) {
    if (c == '\0' || c == '\r') return {400, "malformed header field"};
  }
  if (out->fields.size() == kMaxHeaderFields) {
    return {431, "too many header fields"};
  }
  out->fields.push_back(field);
  return ApplyField(field, out);
}

}  // namespace

size_t HeadScanner::Scan(absl::string_view request) {
  const char* data = request.data();
  size_t pos = scanned_;
  while (pos < request.size()) {
    const void* lf = std::memchr(data + pos, '\n', request.size() - pos);
    if (lf == nullptr) break;
    const size_t at = static_cast<size_t>(static_cast<const char*>(lf) - data);
    size_t line_length = at - line_start_;
    if (line_length > 0 && data[at - 1] == '\r') --line_length;
    if (line_length == 0) {  // the empty line ends the head
      examined_ += at + 1 - scanned_;
      return at + 1;
    }
    line_start_ = at + 1;
    pos = at + 1;
  }
  examined_ += request.size() - scanned_;
  scanned_ = request.size();
  return 0;
}

const HeaderField* RequestHead::Find(absl::string_view name) const {
  for (const HeaderField& field : fields) {
    if (absl::EqualsIgnoreCase(field.name, name)) return &field;
  }
  return nullptr;
}

HeadError ParseRequestHead(absl::string_view head, RequestHead* out) {
  out->fields.clear();
  out->has_content_length = false;
  out->content_length = 0;
  out->chunked = false;
  out->expect_continue = false;
  absl::string_view rest = head;
  if (HeadError error = ParseRequestLine(NextLine(&rest), out); error.status) {
    return error;
  }
  for (absl::string_view line = NextLine(&rest); !line.empty();
       line = NextLine(&rest)) {
    if (HeadError error = ParseField(line, out); error.status) return error;
  }
  if (out->chunked && out->has_content_length) {
    return {400, "Content-Length with Transfer-Encoding"};
  }
  return {};
}

std::string PercentDecodePath(absl::string_view path) {
  std::string decoded;
  decoded.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] == '%' && i + 2 < path.size() &&
        absl::ascii_isxdigit(static_cast<unsigned char>(path[i + 1])) &&
        absl::ascii_isxdigit(static_cast<unsigned char>(path[i + 2]))) {
      decoded.push_back(static_cast<char>(HexValue(path[i + 1]) * 16 +
                                          HexValue(path[i + 2])));
      i += 2;
    } else {
      decoded.push_back(path[i]);
    }
  }
  return decoded;
}

ChunkedDecoder::Result ChunkedDecoder::Feed(absl::string_view input,
                                            size_t max_body, std::string* body,
                                            size_t* consumed) {
  size_t i = 0;
  while (i < input.size()) {
    if (state_ == State::kData) {
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(remaining_, input.size() - i));
      body->append(input.data() + i, n);
      i += n;
      remaining_ -= n;
      if (remaining_ == 0) state_ = State::kDataCr;
      continue;
    }
    const Result result = Step(input[i], max_body, *body);
    ++i;
    if (result != Result::kNeedMore) {
      *consumed = i;
      return result;
    }
  }
  *consumed = i;
  return Result::kNeedMore;
}

ChunkedDecoder::Result ChunkedDecoder::EndOfSizeLine(size_t max_body,
                                                     const std::string& body) {
  if (size_digits_ == 0) return Result::kMalformed;
  size_digits_ = 0;
  line_bytes_ = 0;
  if (remaining_ == 0) {
    state_ = State::kTrailer;
    return Result::kNeedMore;
  }
  if (remaining_ > max_body - std::min(max_body, body.size())) {
    return Result::kTooLarge;
  }
  state_ = State::kData;
  return Result::kNeedMore;
}

ChunkedDecoder::Result ChunkedDecoder::Step(char c, size_t max_body,
                                            const std::string& body) {
  switch (state_) {
    case State::kSize:
      return SizeByte(c, max_body, body);
    case State::kExtension:
      if (c == '\n') return EndOfSizeLine(max_body, body);
      return ++line_bytes_ > kMaxLineBytes ? Result::kMalformed
                                           : Result::kNeedMore;
    case State::kSizeLf:
      return c == '\n' ? EndOfSizeLine(max_body, body) : Result::kMalformed;
    case State::kDataCr:
      if (c == '\n') {
        state_ = State::kSize;
        return Result::kNeedMore;
      }
      state_ = State::kDataLf;
      return c == '\r' ? Result::kNeedMore : Result::kMalformed;
    case State::kDataLf:
      state_ = State::kSize;
      return c == '\n' ? Result::kNeedMore : Result::kMalformed;
    case State::kTrailer:
    case State::kTrailerLf:
      return TrailerByte(c);
    case State::kData:
      break;  // handled by Feed()
  }
  return Result::kMalformed;
}

ChunkedDecoder::Result ChunkedDecoder::SizeByte(char c, size_t max_body,
                                                const std::string& body) {
  if (absl::ascii_isxdigit(static_cast<unsigned char>(c))) {
    if (++size_digits_ > 15) return Result::kMalformed;
    remaining_ = remaining_ * 16 + static_cast<uint64_t>(HexValue(c));
    return Result::kNeedMore;
  }
  if (c == '\r') {
    state_ = State::kSizeLf;
    return Result::kNeedMore;
  }
  if (c == '\n') return EndOfSizeLine(max_body, body);
  if (size_digits_ == 0 || (c != ';' && c != ' ' && c != '\t')) {
    return Result::kMalformed;
  }
  state_ = State::kExtension;
  return Result::kNeedMore;
}

ChunkedDecoder::Result ChunkedDecoder::TrailerByte(char c) {
  if (c == '\n') {
    if (line_bytes_ == 0) return Result::kDone;
    line_bytes_ = 0;
    state_ = State::kTrailer;
    return Result::kNeedMore;
  }
  if (state_ == State::kTrailerLf) return Result::kMalformed;  // bare CR
  if (c == '\r') {
    state_ = State::kTrailerLf;
    return Result::kNeedMore;
  }
  ++line_bytes_;
  return ++trailer_bytes_ > kMaxTrailerBytes ? Result::kMalformed
                                             : Result::kNeedMore;
}

}  // namespace hoist::receiver
