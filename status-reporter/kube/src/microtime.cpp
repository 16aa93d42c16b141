#include "gm/kube/microtime.h"

#include <cstdio>

namespace gm::kube {
namespace {

using Days = std::chrono::duration<long long, std::ratio<86400>>;

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil): no timegm, no time zone database.
long long DaysFromCivil(long long y, unsigned m, unsigned d) {
  y -= m <= 2;
  const long long era = (y >= 0 ? y : y - 399) / 400;
  const auto yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<long long>(doe) - 719468;
}

// The inverse: year, month, day of a day count.
void CivilFromDays(long long z, long long* y, unsigned* m, unsigned* d) {
  z += 719468;
  const long long era = (z >= 0 ? z : z - 146096) / 146097;
  const auto doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<long long>(yoe) + era * 400 + (*m <= 2);
}

unsigned DaysInMonth(long long y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  const bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

// Reads exactly `width` digits at `pos`.
bool Digits(std::string_view s, std::size_t pos, std::size_t width, unsigned* out) {
  if (pos + width > s.size()) return false;
  unsigned v = 0;
  for (std::size_t i = pos; i < pos + width; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  }
  *out = v;
  return true;
}

}  // namespace

std::string FormatMicroTime(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto us = time_point_cast<microseconds>(t).time_since_epoch();
  const auto days = floor<Days>(us);
  const auto in_day = us - days;
  long long y;
  unsigned m, d;
  CivilFromDays(days.count(), &y, &m, &d);
  const auto h = duration_cast<hours>(in_day);
  const auto min = duration_cast<minutes>(in_day - h);
  const auto s = duration_cast<seconds>(in_day - h - min);
  const auto frac = in_day - h - min - s;
  char buf[80];  // room for any year the arithmetic can produce
  static_cast<void>(std::snprintf(buf, sizeof buf, "%04lld-%02u-%02uT%02d:%02d:%02d.%06lldZ", y, m,
                                  d, static_cast<int>(h.count()), static_cast<int>(min.count()),
                                  static_cast<int>(s.count()),
                                  static_cast<long long>(frac.count())));
  return buf;
}

std::optional<std::chrono::system_clock::time_point> ParseMicroTime(std::string_view t) {
  using namespace std::chrono;
  unsigned year, month, day, hour, minute, second;
  if (!Digits(t, 0, 4, &year) || t.size() < 20 || t[4] != '-' || !Digits(t, 5, 2, &month) ||
      t[7] != '-' || !Digits(t, 8, 2, &day) || (t[10] != 'T' && t[10] != 't') ||
      !Digits(t, 11, 2, &hour) || t[13] != ':' || !Digits(t, 14, 2, &minute) || t[16] != ':' ||
      !Digits(t, 17, 2, &second)) {
    return std::nullopt;
  }
  if (month < 1 || month > 12 || day < 1 || day > DaysInMonth(year, month) || hour > 23 ||
      minute > 59 || second > 59) {
    return std::nullopt;
  }
  std::size_t pos = 19;
  nanoseconds fraction{0};
  if (t[pos] == '.') {
    long long ns = 0;
    std::size_t digits = 0;
    for (++pos; pos < t.size() && t[pos] >= '0' && t[pos] <= '9'; ++pos, ++digits) {
      if (digits < 9) ns = ns * 10 + (t[pos] - '0');
    }
    if (digits == 0 || digits > 9) return std::nullopt;
    for (std::size_t i = digits; i < 9; ++i) ns *= 10;
    fraction = nanoseconds(ns);
  }
  seconds offset{0};
  if (pos < t.size() && (t[pos] == 'Z' || t[pos] == 'z')) {
    ++pos;
  } else if (pos < t.size() && (t[pos] == '+' || t[pos] == '-')) {
    unsigned oh, om;
    if (!Digits(t, pos + 1, 2, &oh) || pos + 3 >= t.size() || t[pos + 3] != ':' ||
        !Digits(t, pos + 4, 2, &om) || oh > 23 || om > 59) {
      return std::nullopt;
    }
    offset = hours(oh) + minutes(om);
    if (t[pos] == '-') offset = -offset;
    pos += 6;
  } else {
    return std::nullopt;
  }
  if (pos != t.size()) return std::nullopt;
  const auto since_epoch = Days(DaysFromCivil(year, month, day)) + hours(hour) + minutes(minute) +
                           seconds(second) + fraction - offset;
  return system_clock::time_point(duration_cast<system_clock::duration>(since_epoch));
}

}  // namespace gm::kube
