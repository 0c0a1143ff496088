// ingotd's security against the real server on loopback, configured through a YAML
// file, with certificates made by the openssl tool: TLS and mutual TLS (plaintext,
// missing client certificate and wrong CAs refused), SIGHUP serving a new certificate,
// bearer-token roles, model roots, request limits; after every refusal the server
// still serves.
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

#include <grpcpp/security/credentials.h>

#include "reflection.grpc.pb.h"
#include "ingot/v1/quantization.grpc.pb.h"
#include "tests/integration/integration_fixture.h"
#include "tests/server/test_certs.h"

namespace ingot::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

constexpr char kAdmin[] = "adm-7f3c9e21b4";
constexpr char kReadOnly[] = "ro-5d81a0c6e2";

// A TLS channel trusting `root` for the server, presenting `client` when given. Its
// own subchannel pool, so no connection is shared with an earlier channel.
std::shared_ptr<grpc::Channel> TlsChannel(const std::string& address, const CertFiles& root,
                                          const CertFiles* client = nullptr) {
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = SlurpFile(root.cert);
  if (client != nullptr) {
    options.pem_private_key = SlurpFile(client->key);
    options.pem_cert_chain = SlurpFile(client->cert);
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  return grpc::CreateCustomChannel(address, grpc::SslCredentials(options), args);
}

std::shared_ptr<grpc::Channel> PlainChannel(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
}

// grpc.health.v1 Check of the whole server (no token: health stays open).
grpc::Status HealthCheck(const std::shared_ptr<grpc::Channel>& channel) {
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(In(10));
  grpc::health::v1::HealthCheckRequest request;
  grpc::health::v1::HealthCheckResponse response;
  grpc::Status s = stub->Check(&context, request, &response);
  if (s.ok() && response.status() != HealthStatus::SERVING) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "not SERVING");
  }
  return s;
}

// Polls health over `channel` until SERVING; false if ingotd exits first.
bool WaitServingOver(IngotdProcess& server, const std::shared_ptr<grpc::Channel>& channel) {
  auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (server.Exited()) return false;
    if (HealthCheck(channel).ok()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return false;
}

void Authorize(grpc::ClientContext* context, const std::string& token) {
  context->set_deadline(In(300));
  if (!token.empty()) context->AddMetadata("authorization", "Bearer " + token);
}

grpc::Status ListModels(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
                        v1::ListModelsResponse* out = nullptr) {
  grpc::ClientContext context;
  Authorize(&context, token);
  v1::ListModelsResponse response;
  return v1::ModelService::NewStub(channel)->ListModels(&context, {}, out ? out : &response);
}

LoadResult LoadAs(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
                  const std::string& name, const std::string& source) {
  grpc::ClientContext context;
  Authorize(&context, token);
  v1::LoadModelRequest request;
  request.set_name(name);
  request.set_source(source);
  auto reader = v1::ModelService::NewStub(channel)->LoadModel(&context, request);
  LoadResult result;
  v1::LoadModelResponse response;
  while (reader->Read(&response)) result.messages.push_back(response);
  result.status = reader->Finish();
  return result;
}

grpc::Status UnloadAs(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
                      const std::string& name) {
  grpc::ClientContext context;
  Authorize(&context, token);
  v1::UnloadModelRequest request;
  request.set_name(name);
  v1::UnloadModelResponse response;
  return v1::ModelService::NewStub(channel)->UnloadModel(&context, request, &response);
}

// One Generate call to its end; `on_first` runs at the first message.
Generation GenerateAs(const std::shared_ptr<grpc::Channel>& channel, const std::string& token,
                      const v1::GenerateRequest& request, std::function<void()> on_first = nullptr) {
  grpc::ClientContext context;
  Authorize(&context, token);
  auto reader = v1::GenerationService::NewStub(channel)->Generate(&context, request);
  Generation g;
  v1::GenerateResponse response;
  while (reader->Read(&response)) {
    if (g.messages++ == 0 && on_first) on_first();
    g.text += response.text();
    g.last = response;
  }
  g.status = reader->Finish();
  return g;
}

std::string Describe(const grpc::Status& s) {
  return std::to_string(s.error_code()) + " " + s.error_message();
}

// The certificates every test here uses, made once.
struct Pki {
  std::string dir;
  CertFiles ca1, ca2, server1, server2, client1, client2;
};

Pki* MakePki() {
  auto* pki = new Pki;
  pki->dir = MakeTempDir();
  for (const std::string& err :
       {MakeCa(pki->dir, "ca1", &pki->ca1), MakeCa(pki->dir, "ca2", &pki->ca2),
        MakeLeaf(pki->dir, "server1", pki->ca1, true, &pki->server1),
        MakeLeaf(pki->dir, "server2", pki->ca2, true, &pki->server2),
        MakeLeaf(pki->dir, "client1", pki->ca1, false, &pki->client1),
        MakeLeaf(pki->dir, "client2", pki->ca2, false, &pki->client2)}) {
    if (!err.empty()) {
      ADD_FAILURE() << err;
      return nullptr;
    }
  }
  return pki;
}

// One TLS server with tokens, roots and limits for the whole suite (the model loads
// once). The SIGHUP test changes its certificate, so it runs last.
class SecureServerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!fs::exists(DefaultModelPath())) return;
    pki_ = MakePki();
    if (pki_ == nullptr) return;
    // The served pair is a copy the SIGHUP test overwrites.
    live_ = {pki_->dir + "/live.pem", pki_->dir + "/live.key"};
    fs::copy_file(pki_->server1.cert, live_.cert);
    fs::copy_file(pki_->server1.key, live_.key);
    root_ = pki_->dir + "/root";
    fs::create_directories(root_);
    fs::create_symlink(DefaultModelPath(), root_ + "/inside.gguf");  // resolves into a root
    fs::create_symlink("/etc/passwd", root_ + "/escape.gguf");
    std::ofstream(pki_->dir + "/tokens")
        << "# test tokens\n" << kAdmin << " admin ops\n" << kReadOnly << " read-only dashboards\n";
    const std::string models_dir = fs::path(DefaultModelPath()).parent_path().string();
    std::ofstream(pki_->dir + "/ingotd.yaml")
        << "threads: 2\n"
        << "model_roots: [" << models_dir << ", " << root_ << "]\n"
        << "limits: {max_request_bytes: 65536, max_prompt_tokens: 64, max_tokens: 48,\n"
        << "         max_concurrent_streams: 2}\n"
        << "tls: {cert_file: " << live_.cert << ", key_file: " << live_.key << "}\n"
        << "auth: {tokens_file: " << pki_->dir << "/tokens}\n"
        << "models:\n  - {name: default, source: " << DefaultModelPath() << "}\n";
    server_ = new IngotdProcess();
    server_->Start({"--config", pki_->dir + "/ingotd.yaml"});
    started_ = WaitServingOver(*server_, TlsChannel(server_->address(), pki_->ca1));
  }
  static void TearDownTestSuite() {
    delete server_;
    server_ = nullptr;
    if (pki_) fs::remove_all(pki_->dir);
    delete pki_;
    pki_ = nullptr;
  }
  void SetUp() override {
    if (!fs::exists(DefaultModelPath())) GTEST_SKIP() << "default model not fetched";
    ASSERT_NE(pki_, nullptr) << "openssl could not make the test certificates";
    ASSERT_TRUE(started_) << "ingotd did not become SERVING over TLS; log:\n" << server_->ReadLog();
  }
  void TearDown() override {
    if (HasFailure() && server_) std::cerr << "ingotd log:\n" << server_->ReadLog();
  }

  std::shared_ptr<grpc::Channel> Tls() { return TlsChannel(server_->address(), pki_->ca1); }
  // After a refusal: the server still answers a normal call.
  void ExpectStillServes() {
    v1::ListModelsResponse models;
    grpc::Status s = ListModels(Tls(), kReadOnly, &models);
    EXPECT_TRUE(s.ok()) << "not serving after a refusal: " << Describe(s);
    EXPECT_GE(models.models_size(), 1);
  }

  static Pki* pki_;
  static CertFiles live_;
  static std::string root_;
  static IngotdProcess* server_;
  static bool started_;
};
Pki* SecureServerTest::pki_ = nullptr;
CertFiles SecureServerTest::live_;
std::string SecureServerTest::root_;
IngotdProcess* SecureServerTest::server_ = nullptr;
bool SecureServerTest::started_ = false;

TEST_F(SecureServerTest, TlsServesAndRefusesPlaintextAndAWrongCa) {
  v1::ListModelsResponse models;
  ASSERT_TRUE(ListModels(Tls(), kReadOnly, &models).ok());
  ASSERT_EQ(models.models_size(), 1);
  EXPECT_EQ(models.models(0).name(), "default");

  grpc::Status plain = HealthCheck(PlainChannel(server_->address()));
  EXPECT_EQ(plain.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(plain);
  ExpectStillServes();
  grpc::Status wrong_ca = HealthCheck(TlsChannel(server_->address(), pki_->ca2));
  EXPECT_EQ(wrong_ca.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(wrong_ca);
  ExpectStillServes();
}

TEST_F(SecureServerTest, TokensAndRoles) {
  auto channel = Tls();
  grpc::Status none = ListModels(channel, "");
  EXPECT_EQ(none.error_code(), grpc::StatusCode::UNAUTHENTICATED) << Describe(none);
  EXPECT_THAT(none.error_message(), HasSubstr("missing bearer token"));
  grpc::Status unknown = ListModels(channel, "guessed-token");
  EXPECT_EQ(unknown.error_code(), grpc::StatusCode::UNAUTHENTICATED) << Describe(unknown);
  ExpectStillServes();

  // Read-only: generates and tokenizes, may not load, unload or quantize.
  LoadResult ro_load = LoadAs(channel, kReadOnly, "second", DefaultModelPath());
  EXPECT_EQ(ro_load.status.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << Describe(ro_load.status);
  EXPECT_THAT(ro_load.status.error_message(), HasSubstr("ingot.v1.ModelService/LoadModel"));
  EXPECT_THAT(ro_load.status.error_message(), HasSubstr("'dashboards'"));
  EXPECT_TRUE(ro_load.messages.empty());
  grpc::Status ro_unload = UnloadAs(channel, kReadOnly, "default");
  EXPECT_EQ(ro_unload.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(ro_unload);
  {
    grpc::ClientContext context;
    Authorize(&context, kReadOnly);
    v1::QuantizeModelRequest request;
    request.set_source("default");
    request.set_target("q");
    request.mutable_config()->set_method("hqq");
    auto reader = v1::QuantizationService::NewStub(channel)->QuantizeModel(&context, request);
    v1::QuantizeModelResponse response;
    while (reader->Read(&response)) {}
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(s);
    EXPECT_THAT(s.error_message(), HasSubstr("QuantizeModel"));
  }
  ExpectStillServes();
  Generation ro_gen = GenerateAs(channel, kReadOnly, Greedy("default", "The capital of France is", 8));
  ASSERT_TRUE(ro_gen.status.ok()) << Describe(ro_gen.status);
  EXPECT_FALSE(ro_gen.text.empty());
  EXPECT_TRUE(IsFinal(ro_gen.last.finish_reason()));
  // The same generation with an admin token gives the same greedy text.
  Generation admin_gen = GenerateAs(channel, kAdmin, Greedy("default", "The capital of France is", 8));
  ASSERT_TRUE(admin_gen.status.ok()) << Describe(admin_gen.status);
  EXPECT_EQ(admin_gen.text, ro_gen.text);

  // Admin: loads and unloads.
  LoadResult admin_load = LoadAs(channel, kAdmin, "second", DefaultModelPath());
  ASSERT_TRUE(admin_load.status.ok()) << Describe(admin_load.status);
  EXPECT_TRUE(UnloadAs(channel, kAdmin, "second").ok());

  // Health and reflection need no token.
  EXPECT_TRUE(HealthCheck(channel).ok());
  namespace refl = grpc::reflection::v1alpha;
  grpc::ClientContext context;
  context.set_deadline(In(30));
  auto stream = refl::ServerReflection::NewStub(channel)->ServerReflectionInfo(&context);
  refl::ServerReflectionRequest list;
  list.set_list_services("*");
  ASSERT_TRUE(stream->Write(list));
  refl::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  EXPECT_GE(response.list_services_response().service_size(), 3);
  stream->WritesDone();
  EXPECT_TRUE(stream->Finish().ok());
  ExpectStillServes();
}

// The CLI speaks TLS with --tls-ca and sends --token (or $INGOT_TOKEN).
TEST_F(SecureServerTest, CliUsesTlsAndTokens) {
  const std::string addr = server_->address();
  CommandResult ok = RunCommand({INGOT_CLI_PATH, "--server", addr, "--tls-ca", pki_->ca1.cert, "--token",
                                 kReadOnly, "models"});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_THAT(ok.out, HasSubstr("default"));
  CommandResult no_token = RunCommand({INGOT_CLI_PATH, "--server", addr, "--tls-ca", pki_->ca1.cert, "models"});
  EXPECT_NE(no_token.exit_code, 0);
  EXPECT_THAT(no_token.err, HasSubstr("UNAUTHENTICATED"));
  CommandResult plain = RunCommand({INGOT_CLI_PATH, "--server", addr, "--timeout", "5", "--token", kAdmin, "models"});
  EXPECT_NE(plain.exit_code, 0);
  CommandResult ro_save = RunCommand({INGOT_CLI_PATH, "--server", addr, "--tls-ca", pki_->ca1.cert, "--token",
                                      kReadOnly, "save", "default", root_ + "/copy.gguf"});
  EXPECT_NE(ro_save.exit_code, 0);
  EXPECT_THAT(ro_save.err, HasSubstr("PERMISSION_DENIED"));
  CommandResult outside = RunCommand({INGOT_CLI_PATH, "--server", addr, "--tls-ca", pki_->ca1.cert, "--token",
                                      kAdmin, "save", "default", "/tmp/../etc/ingot-escape.gguf"});
  EXPECT_NE(outside.exit_code, 0);
  EXPECT_THAT(outside.err, HasSubstr("PERMISSION_DENIED"));
  ExpectStillServes();
}

TEST_F(SecureServerTest, PathsOutsideTheRootsArePermissionDenied) {
  auto channel = Tls();
  const std::string models_dir = fs::path(DefaultModelPath()).parent_path().string();
  for (const std::string& source :
       {models_dir + "/../README.md", std::string("/etc/passwd"), root_ + "/escape.gguf",
        root_ + "/../live.key", root_ + "/missing/../../tokens"}) {
    SCOPED_TRACE(source);
    LoadResult r = LoadAs(channel, kAdmin, "sneaky", source);
    EXPECT_EQ(r.status.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(r.status);
    EXPECT_THAT(r.status.error_message(), HasSubstr("source: '" + source + "'"));
    EXPECT_THAT(r.status.error_message(), HasSubstr("outside the model roots"));
    ExpectStillServes();
  }
  {
    grpc::ClientContext context;
    Authorize(&context, kAdmin);
    v1::QuantizeModelRequest request;
    request.set_source("default");
    request.set_target("q");
    request.mutable_config()->set_method("gptq");
    request.mutable_config()->set_calibration_file("/etc/passwd");
    auto reader = v1::QuantizationService::NewStub(channel)->QuantizeModel(&context, request);
    v1::QuantizeModelResponse response;
    while (reader->Read(&response)) {}
    grpc::Status s = reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED) << Describe(s);
    EXPECT_THAT(s.error_message(), HasSubstr("config.calibration_file: '/etc/passwd'"));
  }
  ExpectStillServes();
  // A symlink that stays inside a root loads.
  LoadResult inside = LoadAs(channel, kAdmin, "inside", root_ + "/inside.gguf");
  ASSERT_TRUE(inside.status.ok()) << Describe(inside.status);
  EXPECT_TRUE(UnloadAs(channel, kAdmin, "inside").ok());
}

TEST_F(SecureServerTest, LimitsAreResourceExhaustedNamingTheLimit) {
  auto channel = Tls();
  Generation too_long = GenerateAs(channel, kReadOnly, Greedy("default", "Hi", 49));
  EXPECT_EQ(too_long.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << Describe(too_long.status);
  EXPECT_THAT(too_long.status.error_message(), HasSubstr("limits.max_tokens (48)"));
  ExpectStillServes();

  // The refusal counts the prompt's tokens as Tokenize does.
  std::string prompt;
  for (int i = 1; i <= 40; ++i) prompt += std::to_string(i) + ", ";
  grpc::ClientContext tok_context;
  Authorize(&tok_context, kReadOnly);
  v1::TokenizeRequest tok_request;
  tok_request.set_model("default");
  tok_request.set_text(prompt);
  v1::TokenizeResponse tokens;
  ASSERT_TRUE(v1::GenerationService::NewStub(channel)->Tokenize(&tok_context, tok_request, &tokens).ok());
  ASSERT_GT(tokens.ids_size(), 64);
  Generation long_prompt = GenerateAs(channel, kReadOnly, Greedy("default", prompt, 4));
  EXPECT_EQ(long_prompt.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << Describe(long_prompt.status);
  EXPECT_THAT(long_prompt.status.error_message(),
              HasSubstr("prompt has " + std::to_string(tokens.ids_size()) +
                        " tokens, over limits.max_prompt_tokens (64)"));
  ExpectStillServes();

  // gRPC's own message-size check: RESOURCE_EXHAUSTED naming the 65536-byte limit.
  Generation huge = GenerateAs(channel, kReadOnly, Greedy("default", std::string(70000, 'a'), 4));
  EXPECT_EQ(huge.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << Describe(huge.status);
  EXPECT_THAT(huge.status.error_message(), HasSubstr("65536"));
  ExpectStillServes();

  // Two streams running (the limit), a third is refused; both finish normally.
  std::atomic<int> started{0};
  std::vector<Generation> running(2);
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&, i] {
      running[i] = GenerateAs(channel, kReadOnly, Greedy("default", kCountingPrompt, 48),
                              [&] { started++; });
    });
  }
  ASSERT_TRUE(WaitFor([&] { return started == 2; })) << "the two streams did not start";
  Generation third = GenerateAs(channel, kReadOnly, Greedy("default", "Hello", 4));
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(third.status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED)
      << Describe(third.status);
  EXPECT_THAT(third.status.error_message(), HasSubstr("limits.max_concurrent_streams (2)"));
  for (const Generation& g : running) {
    EXPECT_TRUE(g.status.ok()) << Describe(g.status);
    EXPECT_TRUE(IsFinal(g.last.finish_reason()));
  }
  // A stream leaves the count when its handler is done, just after the client has read
  // the final status: the slot frees up within moments, not necessarily at once.
  Generation after;
  EXPECT_TRUE(WaitFor([&] {
    after = GenerateAs(channel, kReadOnly, Greedy("default", "Hello", 4));
    return after.status.ok();
  })) << Describe(after.status);
}

// Last: swaps the served certificate. Files changed on disk are not served until
// SIGHUP; after it, new connections get the new certificate.
TEST_F(SecureServerTest, SighupServesTheNewCertificate) {
  fs::copy_file(pki_->server2.cert, live_.cert, fs::copy_options::overwrite_existing);
  fs::copy_file(pki_->server2.key, live_.key, fs::copy_options::overwrite_existing);
  // Longer than the certificate watcher's 1 s refresh: without SIGHUP nothing changes.
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  EXPECT_TRUE(HealthCheck(TlsChannel(server_->address(), pki_->ca1)).ok());
  EXPECT_FALSE(HealthCheck(TlsChannel(server_->address(), pki_->ca2)).ok());

  ASSERT_EQ(kill(server_->pid(), SIGHUP), 0);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  bool switched = false;
  while (!switched && std::chrono::steady_clock::now() < deadline) {
    switched = HealthCheck(TlsChannel(server_->address(), pki_->ca2)).ok();
    if (!switched) std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  ASSERT_TRUE(switched) << "the new certificate was not served after SIGHUP";
  EXPECT_FALSE(HealthCheck(TlsChannel(server_->address(), pki_->ca1)).ok());
  EXPECT_THAT(server_->ReadLog(), HasSubstr("TLS certificates reloaded (generation 2)"));
  v1::ListModelsResponse models;
  EXPECT_TRUE(ListModels(TlsChannel(server_->address(), pki_->ca2), kReadOnly, &models).ok());
}

// Mutual TLS: only clients with a certificate from the configured CA get in. A SIGHUP
// with a broken certificate file keeps the working one.
TEST(MutualTlsTest, OnlyClientsWithACertificateFromTheCaGetIn) {
  std::unique_ptr<Pki> pki(MakePki());
  ASSERT_NE(pki, nullptr);
  const CertFiles live{pki->dir + "/live.pem", pki->dir + "/live.key"};
  fs::copy_file(pki->server1.cert, live.cert);
  fs::copy_file(pki->server1.key, live.key);
  std::ofstream(pki->dir + "/mtls.yaml")
      << "tls: {cert_file: " << live.cert << ", key_file: " << live.key
      << ", client_ca_file: " << pki->ca1.cert << "}\n";
  IngotdProcess server;
  server.Start({"--config", pki->dir + "/mtls.yaml"});
  auto good = [&] { return TlsChannel(server.address(), pki->ca1, &pki->client1); };
  ASSERT_TRUE(WaitServingOver(server, good())) << server.ReadLog();
  EXPECT_TRUE(ListModels(good(), "").ok());  // no auth configured: open

  for (const auto& [what, channel] :
       std::vector<std::pair<std::string, std::shared_ptr<grpc::Channel>>>{
           {"no client certificate", TlsChannel(server.address(), pki->ca1)},
           {"client certificate from another CA", TlsChannel(server.address(), pki->ca1, &pki->client2)},
           {"client trusting another CA", TlsChannel(server.address(), pki->ca2, &pki->client1)},
           {"plaintext", PlainChannel(server.address())}}) {
    SCOPED_TRACE(what);
    grpc::Status s = HealthCheck(channel);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << Describe(s);
    EXPECT_TRUE(HealthCheck(good()).ok()) << "not serving after a refused handshake";
  }

  // A broken certificate on SIGHUP is logged and the working one stays.
  std::ofstream(live.cert, std::ios::trunc) << "not a certificate\n";
  ASSERT_EQ(kill(server.pid(), SIGHUP), 0);
  ASSERT_TRUE(WaitFor([&] {
    return server.ReadLog().find("TLS certificates not reloaded") != std::string::npos;
  })) << server.ReadLog();
  EXPECT_THAT(server.ReadLog(), HasSubstr("holds no PEM certificate"));
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(HealthCheck(good()).ok());
  int status = server.StopWith(SIGTERM, std::chrono::seconds(60));
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << server.ReadLog();
  fs::remove_all(pki->dir);
}

}  // namespace
}  // namespace ingot::testing
