// Certificates for the TLS tests, made by the openssl command-line tool in a
// directory of the test's own: two unrelated CAs, server and client certificates
// signed by each. Header-only so tests/integration can use it too.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

namespace ingot::testing {

// Runs a shell command; returns "" on success, else the command and its output.
inline std::string RunShell(const std::string& command) {
  std::string output;
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "popen failed: " + command;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof(buf), pipe)) > 0;) output.append(buf, n);
  const int status = pclose(pipe);
  if (status == 0) return "";
  return "`" + command + "` failed:\n" + output;
}

inline std::string SlurpFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Paths of one certificate and its key.
struct CertFiles {
  std::string cert;
  std::string key;
};

// A self-signed CA `name` in `dir` (name.pem, name.key). "" on success.
inline std::string MakeCa(const std::string& dir, const std::string& name, CertFiles* out) {
  out->cert = dir + "/" + name + ".pem";
  out->key = dir + "/" + name + ".key";
  return RunShell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
                  " -keyout '" + out->key + "' -out '" + out->cert + "' -days 30"
                  " -subj '/CN=ingot test " + name + "'"
                  " -addext basicConstraints=critical,CA:TRUE"
                  " -addext keyUsage=critical,keyCertSign,cRLSign");
}

// A certificate `name` signed by `ca`: for a server (localhost and 127.0.0.1) or a
// client. `days` may be 0 for one that expires at once. "" on success.
inline std::string MakeLeaf(const std::string& dir, const std::string& name, const CertFiles& ca,
                            bool server, CertFiles* out, int days = 30) {
  out->cert = dir + "/" + name + ".pem";
  out->key = dir + "/" + name + ".key";
  const std::string csr = dir + "/" + name + ".csr";
  const std::string ext = dir + "/" + name + ".ext";
  {
    std::ofstream e(ext);
    e << "basicConstraints=CA:FALSE\n";
    if (server) {
      e << "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n";
    } else {
      e << "extendedKeyUsage=clientAuth\n";
    }
  }
  std::string err = RunShell(
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout '" + out->key +
      "' -out '" + csr + "' -subj '/CN=" + (server ? std::string("localhost") : name) + "/O=" +
      name + "'");
  if (!err.empty()) return err;
  return RunShell("openssl x509 -req -in '" + csr + "' -CA '" + ca.cert + "' -CAkey '" + ca.key +
                  "' -CAcreateserial -out '" + out->cert + "' -days " + std::to_string(days) +
                  " -extfile '" + ext + "'");
}

}  // namespace ingot::testing
