#include "gm/quantity.h"

#include <cctype>
#include <cmath>
#include <cstdlib>

namespace gm {

namespace {

struct Suffix {
  const char* text;
  double factor;
};

// Binary suffixes first so "Mi" is not read as "M" followed by junk.
constexpr Suffix kSuffixes[] = {
    {"Ki", 1024.0},
    {"Mi", 1048576.0},
    {"Gi", 1073741824.0},
    {"Ti", 1099511627776.0},
    {"Pi", 1125899906842624.0},
    {"Ei", 1152921504606846976.0},
    {"n", 1e-9},
    {"u", 1e-6},
    {"m", 1e-3},
    {"k", 1e3},
    {"M", 1e6},
    {"G", 1e9},
    {"T", 1e12},
    {"P", 1e15},
    {"E", 1e18},
};

std::optional<double> Fail(std::string& error, std::string msg) {
  error = std::move(msg);
  return std::nullopt;
}

}  // namespace

std::optional<double> ParseQuantity(std::string_view text, std::string& error) {
  const std::string quoted = "quantity '" + std::string(text) + "'";
  if (text.empty()) return Fail(error, "empty quantity");
  // Number part: [+-]digits[.digits], as the Kubernetes grammar has it.
  size_t i = 0;
  if (text[i] == '+' || text[i] == '-') ++i;
  const size_t digits_start = i;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.'))
    ++i;
  if (i == digits_start) return Fail(error, quoted + " does not start with a number");
  const std::string number(text.substr(0, i));
  if (number.find('.') != number.rfind('.')) return Fail(error, quoted + " has two decimal points");
  // <number> ::= <digits> | <digits>.<digits> | <digits>. | .<digits>: at least one digit.
  if (number.find_first_of("0123456789") == std::string::npos) {
    return Fail(error, quoted + " has no digits");
  }
  double value = std::strtod(number.c_str(), nullptr);

  const std::string_view rest = text.substr(i);
  if (!rest.empty()) {
    if (rest == "E") {
      value *= 1e18;  // the decimal suffix exa, not an exponent
    } else if (rest[0] == 'e' || rest[0] == 'E') {
      // <decimalExponent> ::= "e" <signedNumber> | "E" <signedNumber>: the
      // exponent needs digits ("1e" is not a quantity; apimachinery refuses it).
      const std::string_view exp = rest.substr(1);
      const size_t sign = !exp.empty() && (exp[0] == '+' || exp[0] == '-') ? 1 : 0;
      if (exp.size() == sign ||
          exp.find_first_not_of("0123456789", sign) != std::string_view::npos) {
        return Fail(error, quoted + " has an invalid exponent");
      }
      const long e = std::strtol(std::string(exp).c_str(), nullptr, 10);
      if (std::abs(e) > 30) return Fail(error, quoted + " has an exponent out of range");
      value *= std::pow(10.0, static_cast<double>(e));
    } else {
      bool matched = false;
      for (const auto& s : kSuffixes) {
        if (rest == s.text) {
          value *= s.factor;
          matched = true;
          break;
        }
      }
      if (!matched)
        return Fail(error, quoted + " has an unknown suffix '" + std::string(rest) + "'");
    }
  }
  if (!std::isfinite(value)) return Fail(error, quoted + " is out of range");
  if (value < 0) return Fail(error, quoted + " is negative");
  return value;
}

}  // namespace gm
