#include "detail/curl_transfer.h"

#include <curl/curl.h>

#include <cctype>
#include <cstdio>
#include <exception>
#include <mutex>
#include <new>

#include "detail/stop.h"

namespace gm::kube::detail {
namespace {

// What the callbacks of one transfer share with Perform.
struct TransferState {
  CURL* easy = nullptr;
  const BodySink* sink = nullptr;
  HttpResult* result = nullptr;
  bool sink_ended = false;
  std::exception_ptr error;
};

size_t OnHeader(char* data, size_t size, size_t count, void* userdata) {
  auto* st = static_cast<TransferState*>(userdata);
  const size_t n = size * count;
  std::string_view line(data, n);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (line.rfind("HTTP/", 0) == 0) {
    st->result->headers.clear();  // a new response (after 100 Continue) starts over
    return n;
  }
  const auto colon = line.find(':');
  if (colon == std::string_view::npos) return n;
  std::string name(line.substr(0, colon));
  for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::string_view value = line.substr(colon + 1);
  while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
  st->result->headers.emplace(std::move(name), std::string(value));
  return n;
}

size_t OnBody(char* data, size_t size, size_t count, void* userdata) {
  auto* st = static_cast<TransferState*>(userdata);
  const size_t n = size * count;
  long code = 0;
  curl_easy_getinfo(st->easy, CURLINFO_RESPONSE_CODE, &code);
  if (!st->sink || code < 200 || code > 299) {
    st->result->body.append(data, n);
    return n;
  }
  // Exceptions must not cross libcurl's C frames: keep and rethrow later.
  try {
    if ((*st->sink)(std::string_view(data, n))) return n;
    st->sink_ended = true;
  } catch (...) {
    st->error = std::current_exception();
  }
  return 0;  // ends the transfer
}

void SetBlob(CURL* easy, CURLoption option, const std::string& pem) {
  curl_blob blob{};
  // CURL_BLOB_COPY: curl keeps its own copy, so it never writes through this pointer.
  blob.data = const_cast<char*>(pem.data());
  blob.len = pem.size();
  blob.flags = CURL_BLOB_COPY;
  curl_easy_setopt(easy, option, &blob);
}

void SetTls(CURL* easy, const Config& c) {
  if (c.insecure_skip_tls_verify) {
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 0L);
  } else if (!c.ca_pem.empty() || !c.ca_file.empty()) {
    // Trust only the cluster's CA, as client-go does, not the system store too.
    curl_easy_setopt(easy, CURLOPT_CAPATH, nullptr);
    if (!c.ca_pem.empty()) {
      curl_easy_setopt(easy, CURLOPT_CAINFO, nullptr);
      SetBlob(easy, CURLOPT_CAINFO_BLOB, c.ca_pem);
    } else {
      curl_easy_setopt(easy, CURLOPT_CAINFO, c.ca_file.c_str());
    }
  }
  if (!c.client_cert_pem.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERTTYPE, "PEM");
    SetBlob(easy, CURLOPT_SSLCERT_BLOB, c.client_cert_pem);
  } else if (!c.client_cert_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLCERT, c.client_cert_file.c_str());
  }
  if (!c.client_key_pem.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLKEYTYPE, "PEM");
    SetBlob(easy, CURLOPT_SSLKEY_BLOB, c.client_key_pem);
  } else if (!c.client_key_file.empty()) {
    curl_easy_setopt(easy, CURLOPT_SSLKEY, c.client_key_file.c_str());
  }
}

}  // namespace

CurlConnection::CurlConnection() {
  // curl_global_init is not thread-safe; do it once, before any handle exists.
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  easy_ = curl_easy_init();
  multi_ = curl_multi_init();
  if (!easy_ || !multi_) {
    if (easy_) curl_easy_cleanup(easy_);
    if (multi_) curl_multi_cleanup(multi_);
    throw std::bad_alloc();
  }
}

CurlConnection::~CurlConnection() {
  curl_easy_cleanup(easy_);
  curl_multi_cleanup(multi_);
}

HttpResult CurlConnection::Perform(const HttpRequest& request, const Config& tls,
                                   const BodySink* sink,
                                   std::initializer_list<const std::atomic<bool>*> stop) {
  HttpResult result;
  if (AnyStopped(stop)) {
    result.failed = result.cancelled = result.nothing_sent = true;
    result.error = "stopped";
    return result;
  }
  TransferState state;
  state.easy = easy_;
  state.sink = sink;
  state.result = &result;
  char error_buffer[CURL_ERROR_SIZE] = {0};

  // A reset easy handle keeps nothing from the previous request; the
  // connection cache lives in the multi handle and survives.
  curl_easy_reset(easy_);
  curl_easy_setopt(easy_, CURLOPT_URL, request.url.c_str());
  curl_easy_setopt(easy_, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(easy_, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
  curl_easy_setopt(easy_, CURLOPT_TCP_KEEPALIVE, 1L);  // notices a vanished peer on long watches
  curl_easy_setopt(easy_, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(easy_, CURLOPT_TCP_KEEPINTVL, 10L);
  curl_easy_setopt(easy_, CURLOPT_ACCEPT_ENCODING, "");  // large lists come gzip-ed
  curl_easy_setopt(easy_, CURLOPT_ERRORBUFFER, error_buffer);
  curl_easy_setopt(easy_, CURLOPT_TIMEOUT_MS, static_cast<long>(request.timeout.count()));
  curl_easy_setopt(easy_, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(request.connect_timeout.count()));
  if (request.method == "GET") {
    curl_easy_setopt(easy_, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(easy_, CURLOPT_CUSTOMREQUEST, request.method.c_str());
  }
  if (request.body) {
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDS, request.body->data());
    curl_easy_setopt(easy_, CURLOPT_POSTFIELDSIZE_LARGE,
                     static_cast<curl_off_t>(request.body->size()));
  }
  curl_slist* headers = nullptr;
  for (const auto& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  curl_easy_setopt(easy_, CURLOPT_HTTPHEADER, headers);
  SetTls(easy_, tls);
  curl_easy_setopt(easy_, CURLOPT_HEADERFUNCTION, OnHeader);
  curl_easy_setopt(easy_, CURLOPT_HEADERDATA, &state);
  curl_easy_setopt(easy_, CURLOPT_WRITEFUNCTION, OnBody);
  curl_easy_setopt(easy_, CURLOPT_WRITEDATA, &state);

  const auto start = std::chrono::steady_clock::now();
  CURLcode code = CURLE_OK;
  curl_multi_add_handle(multi_, easy_);
  for (;;) {
    int running = 0;
    CURLMcode mc = curl_multi_perform(multi_, &running);
    if (mc == CURLM_OK && running == 0) {
      int left = 0;
      while (CURLMsg* msg = curl_multi_info_read(multi_, &left)) {
        if (msg->msg == CURLMSG_DONE) code = msg->data.result;
      }
      break;
    }
    if (mc == CURLM_OK) mc = curl_multi_poll(multi_, nullptr, 0, 100, nullptr);
    if (mc != CURLM_OK) {
      code = CURLE_FAILED_INIT;
      // A longer message is cut to the buffer, as libcurl cuts its own.
      static_cast<void>(
          std::snprintf(error_buffer, sizeof error_buffer, "%s", curl_multi_strerror(mc)));
      break;
    }
    if (AnyStopped(stop)) {
      result.cancelled = true;
      break;
    }
  }
  curl_multi_remove_handle(multi_, easy_);
  curl_slist_free_all(headers);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();

  long http_code = 0;
  curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &http_code);
  result.code = static_cast<int>(http_code);
  long request_size = 0;
  curl_easy_getinfo(easy_, CURLINFO_REQUEST_SIZE, &request_size);
  result.nothing_sent = request_size == 0;
  if (state.error) std::rethrow_exception(state.error);
  if (result.cancelled) {
    result.failed = true;
    result.error = "stopped";
  } else if (code != CURLE_OK && !(code == CURLE_WRITE_ERROR && state.sink_ended)) {
    result.failed = true;
    result.error = error_buffer[0] ? error_buffer : curl_easy_strerror(code);
  }
  return result;
}

std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (unsigned char c : s) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0x0F]);
    }
  }
  return out;
}

}  // namespace gm::kube::detail
