#include "receiver/notifier_curl.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "receiver/notification.h"

namespace hoist::receiver {
namespace {

struct CurlDeleter {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistDeleter {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};
using CurlPtr = std::unique_ptr<CURL, CurlDeleter>;
using SlistPtr = std::unique_ptr<curl_slist, SlistDeleter>;

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

// Feeds an in-memory message to libcurl's upload (SMTP DATA).
struct Upload {
  const std::string* data;
  size_t offset = 0;
};
size_t ReadUpload(char* out, size_t size, size_t n, void* user) {
  auto* up = static_cast<Upload*>(user);
  const size_t len = std::min(size * n, up->data->size() - up->offset);
  up->data->copy(out, len, up->offset);
  up->offset += len;
  return len;
}

// What a failed transfer means for retries. The message names the curl
// error only: curl's error buffer may quote the URL, which can hold a token.
absl::Status CurlError(CURLcode rc, const char* what) {
  const std::string msg = absl::StrCat(what, ": ", curl_easy_strerror(rc));
  switch (rc) {
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_LOGIN_DENIED:
    case CURLE_USE_SSL_FAILED:
      return absl::FailedPreconditionError(msg);
    default:
      return absl::UnavailableError(msg);
  }
}

void SetCommon(CURL* c, const std::string& url, absl::Duration timeout) {
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(timeout)));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(
                       std::min(timeout, absl::Seconds(10)))));
}

}  // namespace

absl::Status CurlNotifier::Send(const NotifySink& sink, const OutboxRow& row) {
  if (sink.kind == SinkKind::kSmtp) return SendMail(sink, row);
  return PostHttp(sink, row);
}

absl::Status CurlNotifier::PostHttp(const NotifySink& sink,
                                    const OutboxRow& row) {
  const std::string body =
      sink.kind == SinkKind::kSlack ? RenderSlack(row) : RenderJsonBody(row);
  CurlPtr c(curl_easy_init());
  if (c == nullptr) return absl::ResourceExhaustedError("curl_easy_init");
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(
      headers, absl::StrCat("X-Hoist-Delivery: ", row.id).c_str());
  headers = curl_slist_append(
      headers, absl::StrCat("X-Hoist-Event: ", row.event).c_str());
  if (sink.kind == SinkKind::kWebhook && !sink.secret.empty()) {
    headers = curl_slist_append(
        headers,
        absl::StrCat("X-Hoist-Signature: ", SignatureHeader(sink.secret, body))
            .c_str());
  }
  headers = curl_slist_append(headers, "Expect:");
  SlistPtr owned(headers);
  SetCommon(c.get(), sink.url, timeout_);
  curl_easy_setopt(c.get(), CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c.get(), CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c.get(), CURLOPT_POSTFIELDSIZE,
                   static_cast<long>(body.size()));
  curl_easy_setopt(c.get(), CURLOPT_WRITEFUNCTION, &Discard);
  curl_easy_setopt(c.get(), CURLOPT_PROTOCOLS_STR, "http,https");
  const CURLcode rc = curl_easy_perform(c.get());
  if (rc != CURLE_OK) return CurlError(rc, "post");
  long code = 0;
  curl_easy_getinfo(c.get(), CURLINFO_RESPONSE_CODE, &code);
  if (code >= 200 && code < 300) return absl::OkStatus();
  const std::string msg = absl::StrCat("sink answered HTTP ", code);
  if (code == 408 || code == 429 || code >= 500) {
    return absl::UnavailableError(msg);
  }
  return absl::FailedPreconditionError(msg);
}

absl::Status CurlNotifier::SendMail(const NotifySink& sink,
                                    const OutboxRow& row) {
  const std::string message = RenderEmail(row, sink);
  CurlPtr c(curl_easy_init());
  if (c == nullptr) return absl::ResourceExhaustedError("curl_easy_init");
  SetCommon(c.get(), sink.url, timeout_);
  curl_easy_setopt(c.get(), CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  if (sink.starttls) {
    // smtp:// must upgrade: a server that offers no STARTTLS fails the send.
    curl_easy_setopt(c.get(), CURLOPT_USE_SSL,
                     static_cast<long>(CURLUSESSL_ALL));
  }
  if (!sink.username.empty()) {
    curl_easy_setopt(c.get(), CURLOPT_USERNAME, sink.username.c_str());
    curl_easy_setopt(c.get(), CURLOPT_PASSWORD, sink.password.c_str());
  }
  const std::string from = absl::StrCat("<", sink.from, ">");
  curl_easy_setopt(c.get(), CURLOPT_MAIL_FROM, from.c_str());
  curl_slist* rcpt = nullptr;
  for (const std::string& to : sink.to) {
    rcpt = curl_slist_append(rcpt, absl::StrCat("<", to, ">").c_str());
  }
  SlistPtr owned(rcpt);
  curl_easy_setopt(c.get(), CURLOPT_MAIL_RCPT, rcpt);
  Upload upload{&message};
  curl_easy_setopt(c.get(), CURLOPT_READFUNCTION, &ReadUpload);
  curl_easy_setopt(c.get(), CURLOPT_READDATA, &upload);
  curl_easy_setopt(c.get(), CURLOPT_UPLOAD, 1L);
  const CURLcode rc = curl_easy_perform(c.get());
  if (rc != CURLE_OK) return CurlError(rc, "smtp");
  return absl::OkStatus();
}

}  // namespace hoist::receiver
