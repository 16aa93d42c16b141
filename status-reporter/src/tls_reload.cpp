#include "tls_reload.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <stdexcept>
#include <utility>

namespace gm::reporter {

struct ReloadingCertificate::Pair {
  X509* leaf = nullptr;
  STACK_OF(X509) * chain = nullptr;  // intermediates that follow the leaf in the file
  EVP_PKEY* key = nullptr;
  struct timespec cert_mtime {};
  struct timespec key_mtime {};
  ~Pair() {
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    EVP_PKEY_free(key);
  }
};

namespace {

std::string OpenSslError() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return "no detail";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

bool MTime(const std::string& path, struct timespec& out) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return false;
  out = st.st_mtim;
  return true;
}

bool Same(const struct timespec& a, const struct timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Reads the PEM pair; throws with a message naming the file and the problem.
std::shared_ptr<const ReloadingCertificate::Pair> Load(const std::string& cert_file,
                                                       const std::string& key_file) {
  auto pair = std::make_shared<ReloadingCertificate::Pair>();
  MTime(cert_file, pair->cert_mtime);
  MTime(key_file, pair->key_mtime);
  const auto fail = [](const std::string& what) {
    throw std::runtime_error(what + ": " + OpenSslError());
  };

  std::unique_ptr<BIO, decltype(&BIO_free)> certs(BIO_new_file(cert_file.c_str(), "r"), BIO_free);
  if (!certs) fail("cannot open TLS certificate '" + cert_file + "'");
  pair->leaf = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr);
  if (pair->leaf == nullptr) fail("no PEM certificate in '" + cert_file + "'");
  pair->chain = sk_X509_new_null();
  while (X509* next = PEM_read_bio_X509(certs.get(), nullptr, nullptr, nullptr))
    sk_X509_push(pair->chain, next);
  ERR_clear_error();  // the end of the file reads as an error

  std::unique_ptr<BIO, decltype(&BIO_free)> key(BIO_new_file(key_file.c_str(), "r"), BIO_free);
  if (!key) fail("cannot open TLS key '" + key_file + "'");
  pair->key = PEM_read_bio_PrivateKey(key.get(), nullptr, nullptr, nullptr);
  if (pair->key == nullptr) fail("no PEM private key in '" + key_file + "'");
  if (X509_check_private_key(pair->leaf, pair->key) != 1) {
    fail("TLS key '" + key_file + "' does not belong to certificate '" + cert_file + "'");
  }
  return pair;
}

}  // namespace

ReloadingCertificate::ReloadingCertificate(std::string cert_file, std::string key_file,
                                           std::chrono::milliseconds check_interval)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      check_interval_(check_interval),
      current_(Load(cert_file_, key_file_)),
      last_check_(std::chrono::steady_clock::now()) {}

ReloadingCertificate::~ReloadingCertificate() = default;

void ReloadingCertificate::Install(SSL_CTX* ctx) {
  const auto pair = Current();
  if (SSL_CTX_use_cert_and_key(ctx, pair->leaf, pair->key, pair->chain, 1) != 1) {
    throw std::runtime_error("cannot use TLS certificate '" + cert_file_ + "': " + OpenSslError());
  }
  SSL_CTX_set_cert_cb(ctx, &ReloadingCertificate::OnHandshake, this);
}

// Called by OpenSSL in each handshake before the certificate is chosen: the
// connection gets the pair current at that moment.
int ReloadingCertificate::OnHandshake(SSL* ssl, void* self) {
  const auto pair = static_cast<ReloadingCertificate*>(self)->Current();
  return SSL_use_cert_and_key(ssl, pair->leaf, pair->key, pair->chain, 1) == 1 ? 1 : 0;
}

std::shared_ptr<const ReloadingCertificate::Pair> ReloadingCertificate::Current() {
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - last_check_ < check_interval_) return current_;
  last_check_ = now;
  struct timespec cert_mtime {
  }, key_mtime{};
  if (!MTime(cert_file_, cert_mtime) || !MTime(key_file_, key_mtime))
    return current_;  // mid-rotation
  if (Same(cert_mtime, current_->cert_mtime) && Same(key_mtime, current_->key_mtime))
    return current_;
  try {
    current_ = Load(cert_file_, key_file_);
    spdlog::info("serving the renewed TLS certificate from '{}'", cert_file_);
  } catch (const std::exception& e) {
    // A half-written pair (certificate renewed, key not yet) comes right at
    // the next check; until then the last good pair is served.
    spdlog::warn("keeping the current TLS certificate: {}", e.what());
  }
  return current_;
}

}  // namespace gm::reporter
