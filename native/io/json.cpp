#include "io/json.h"

#include <cerrno>
#include <cstdlib>
#include <stdexcept>

namespace comeba {

const Json* Json::find(std::string_view key) const {
  for (const auto& [name, value] : members_)
    if (name == key) return &value;
  return nullptr;
}

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  Json document() {
    Json value = parse_value(0);
    skip_space();
    if (pos_ != text_.size()) error("trailing characters");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 64;  // headers are shallow; deep nesting is hostile input

  [[noreturn]] void error(const std::string& what) const {
    throw std::invalid_argument("JSON " + what + " at byte " + std::to_string(pos_));
  }

  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n' || text_[pos_] == '\r' || text_[pos_] == '\t'))
      ++pos_;
  }

  char peek() {
    skip_space();
    if (pos_ >= text_.size()) error("unexpected end");
    return text_[pos_];
  }

  void expect(char c) {
    if (peek() != c) error(std::string("expected '") + c + "'");
    ++pos_;
  }

  void literal(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) error("invalid literal");
    pos_ += word.size();
  }

  Json parse_value(int depth) {
    if (depth > kMaxDepth) error("nested too deeply");
    Json value;
    switch (peek()) {
      case '{': parse_object(value, depth); break;
      case '[': parse_array(value, depth); break;
      case '"': value.type_ = Json::Type::String; value.string_ = parse_string(); break;
      case 't': literal("true"); value.type_ = Json::Type::Bool; value.bool_ = true; break;
      case 'f': literal("false"); value.type_ = Json::Type::Bool; break;
      case 'n': literal("null"); break;
      default: parse_number(value);
    }
    return value;
  }

  void parse_object(Json& value, int depth) {
    value.type_ = Json::Type::Object;
    expect('{');
    if (peek() == '}') { ++pos_; return; }
    while (true) {
      if (peek() != '"') error("expected a member name");
      std::string key = parse_string();
      expect(':');
      value.members_.emplace_back(std::move(key), parse_value(depth + 1));
      char c = peek();
      ++pos_;
      if (c == '}') return;
      if (c != ',') error("expected ',' or '}'");
    }
  }

  void parse_array(Json& value, int depth) {
    value.type_ = Json::Type::Array;
    expect('[');
    if (peek() == ']') { ++pos_; return; }
    while (true) {
      value.items_.push_back(parse_value(depth + 1));
      char c = peek();
      ++pos_;
      if (c == ']') return;
      if (c != ',') error("expected ',' or ']'");
    }
  }

  void parse_number(Json& value) {
    size_t start = pos_;
    if (pos_ < text_.size() && text_[pos_] == '-') ++pos_;
    bool integer = true;
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c >= '0' && c <= '9') { ++pos_; continue; }
      if (c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-') { integer = false; ++pos_; continue; }
      break;
    }
    std::string token(text_.substr(start, pos_ - start));
    if (token.empty() || token == "-") error("invalid value");
    char* end = nullptr;
    errno = 0;
    value.type_ = Json::Type::Number;
    value.number_ = std::strtod(token.c_str(), &end);
    if (*end != '\0') error("invalid number");
    if (integer) {
      errno = 0;
      value.integer_ = std::strtoll(token.c_str(), &end, 10);
      if (errno == ERANGE) error("integer out of range");
      value.is_integer_ = true;
    }
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  uint32_t parse_hex4() {
    if (pos_ + 4 > text_.size()) error("truncated \\u escape");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      char c = text_[pos_++];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= c - '0';
      else if (c >= 'a' && c <= 'f') cp |= c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') cp |= c - 'A' + 10;
      else error("invalid \\u escape");
    }
    return cp;
  }

  std::string parse_string() {
    expect('"');
    std::string out;
    while (true) {
      if (pos_ >= text_.size()) error("unterminated string");
      char c = text_[pos_++];
      if (c == '"') return out;
      if (static_cast<unsigned char>(c) < 0x20) error("control character in string");
      if (c != '\\') { out += c; continue; }
      if (pos_ >= text_.size()) error("unterminated escape");
      char e = text_[pos_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          uint32_t cp = parse_hex4();
          if (cp >= 0xD800 && cp <= 0xDBFF && text_.substr(pos_, 2) == "\\u") {
            pos_ += 2;
            uint32_t low = parse_hex4();
            if (low < 0xDC00 || low > 0xDFFF) error("invalid surrogate pair");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: error("invalid escape");
      }
    }
  }

  std::string_view text_;
  size_t pos_ = 0;
};

Json Json::parse(std::string_view text) { return JsonParser(text).document(); }

}  // namespace comeba
