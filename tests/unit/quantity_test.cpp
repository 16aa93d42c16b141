#include "gm/quantity.h"

#include <doctest/doctest.h>

using gm::ParseQuantity;

TEST_CASE("Kubernetes quantities in base units") {
  std::string err;
  CHECK(*ParseQuantity("200m", err) == doctest::Approx(0.2));
  CHECK(*ParseQuantity("2", err) == doctest::Approx(2));
  CHECK(*ParseQuantity("1.5", err) == doctest::Approx(1.5));
  CHECK(*ParseQuantity("4Gi", err) == doctest::Approx(4294967296.0));
  CHECK(*ParseQuantity("512Mi", err) == doctest::Approx(536870912.0));
  CHECK(*ParseQuantity("100k", err) == doctest::Approx(100000));
  CHECK(*ParseQuantity("1G", err) == doctest::Approx(1e9));
  CHECK(*ParseQuantity("1e3", err) == doctest::Approx(1000));
  CHECK(*ParseQuantity("12E-1", err) == doctest::Approx(1.2));
  CHECK(*ParseQuantity("2E", err) == doctest::Approx(2e18));
  CHECK(*ParseQuantity("+3", err) == doctest::Approx(3));
  CHECK(*ParseQuantity("500u", err) == doctest::Approx(0.0005));
}

TEST_CASE("bad quantities are refused with the reason") {
  std::string err;
  CHECK_FALSE(ParseQuantity("", err));
  CHECK(err == "empty quantity");
  CHECK_FALSE(ParseQuantity("Gi", err));
  CHECK(err.find("does not start with a number") != std::string::npos);
  CHECK_FALSE(ParseQuantity("4GB", err));
  CHECK(err.find("unknown suffix 'GB'") != std::string::npos);
  CHECK_FALSE(ParseQuantity("1.2.3", err));
  CHECK_FALSE(ParseQuantity("-1", err));
  CHECK(err.find("negative") != std::string::npos);
  CHECK_FALSE(ParseQuantity("1e999999", err));
  CHECK_FALSE(ParseQuantity("4 Gi", err));
}

TEST_CASE("quantities follow apimachinery's grammar at the edges") {
  std::string err;
  // <number> may start or end with the point, but needs a digit.
  CHECK(*ParseQuantity(".5", err) == doctest::Approx(0.5));
  CHECK(*ParseQuantity("5.", err) == doctest::Approx(5));
  CHECK_FALSE(ParseQuantity(".", err));
  CHECK(err.find("no digits") != std::string::npos);
  CHECK_FALSE(ParseQuantity("+.", err));
  CHECK_FALSE(ParseQuantity(".Gi", err));
  // "e" is only an exponent marker and needs a signed number after it; "E"
  // alone is the exa suffix.
  CHECK_FALSE(ParseQuantity("1e", err));
  CHECK(err.find("invalid exponent") != std::string::npos);
  CHECK_FALSE(ParseQuantity("1e+", err));
  CHECK_FALSE(ParseQuantity("1E-", err));
  CHECK_FALSE(ParseQuantity("1e3x", err));
  CHECK(*ParseQuantity("1e+3", err) == doctest::Approx(1000));
  CHECK(*ParseQuantity("1E", err) == doctest::Approx(1e18));
  CHECK_FALSE(ParseQuantity("1e31", err));
  CHECK(err.find("out of range") != std::string::npos);
}
