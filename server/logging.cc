#include "server/logging.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "spdlog/pattern_formatter.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"

namespace ingot::server {
namespace {

// The message as a JSON string body: quotes, backslashes and control characters
// escaped (bytes >= 0x80 pass through; messages are UTF-8).
class JsonEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      switch (c) {
        case '"': Append(dest, "\\\""); break;
        case '\\': Append(dest, "\\\\"); break;
        case '\n': Append(dest, "\\n"); break;
        case '\r': Append(dest, "\\r"); break;
        case '\t': Append(dest, "\\t"); break;
        default:
          if (static_cast<unsigned char>(c) < 0x20) {
            char esc[] = {'\\', 'u', '0', '0', kHex[(c >> 4) & 0xF], kHex[c & 0xF]};
            dest.append(esc, esc + sizeof(esc));
          } else {
            dest.push_back(c);
          }
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<JsonEscapedMessage>();
  }

 private:
  static void Append(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.append(s.data(), s.data() + s.size());
  }
};

// The message with every control character written as an escape (\n, \r, \t,
// \xNN): a model name or request_id holding a newline cannot forge a log line. One
// place for every logged client-supplied string, rather than a call at each site.
class TextEscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    static constexpr char kHex[] = "0123456789abcdef";
    for (char c : msg.payload) {
      const auto u = static_cast<unsigned char>(c);
      if (c == '\n') {
        Append(dest, "\\n");
      } else if (c == '\r') {
        Append(dest, "\\r");
      } else if (c == '\t') {
        Append(dest, "\\t");
      } else if (u < 0x20 || u == 0x7f) {
        char esc[] = {'\\', 'x', kHex[u >> 4], kHex[u & 0xF]};
        dest.append(esc, esc + sizeof(esc));
      } else {
        dest.push_back(c);
      }
    }
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<TextEscapedMessage>();
  }

 private:
  static void Append(spdlog::memory_buf_t& dest, std::string_view s) {
    dest.append(s.data(), s.data() + s.size());
  }
};

}  // namespace

absl::Status ConfigureLogging(const std::string& level, bool json) {
  spdlog::level::level_enum lvl = spdlog::level::from_str(level);
  // from_str maps anything unknown to "off"; only "off" itself may mean off.
  if (lvl == spdlog::level::off && level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "--log-level: '", level, "' is not one of trace, debug, info, warn, error, "
        "critical, off"));
  }
  auto logger = std::make_shared<spdlog::logger>(
      "ingotd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (json) {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<JsonEscapedMessage>('*').set_pattern(
        R"({"ts":"%Y-%m-%dT%H:%M:%S.%f%z","level":"%l","thread":%t,"msg":"%*"})");
    logger->set_formatter(std::move(formatter));
  } else {
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<TextEscapedMessage>('*').set_pattern("%Y-%m-%d %H:%M:%S.%e %L %t %*");
    logger->set_formatter(std::move(formatter));
  }
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::info);
  spdlog::set_default_logger(std::move(logger));
  return absl::OkStatus();
}

}  // namespace ingot::server
