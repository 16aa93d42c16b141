// spdlog's and fmt's compiled parts, built into guest-exporter itself from
// the headers Debian ships (libspdlog-dev, libfmt-dev: the same 1.10.0 and
// 9.1.0 sources as libspdlog.so.1.10 and libfmt.so.9), instead of loading
// those two shared libraries. Debian ships no static archives of them. Every
// translation unit still compiles in spdlog's compiled-library mode
// (SPDLOG_COMPILED_LIB, from spdlog::spdlog), so there is one definition of
// each function: this file's, linked before the shared libraries, which
// --as-needed then drops. Why: in every sidecar the two libraries kept about
// 600 KiB resident (their relocated data and the pages around each touched
// function), while the few functions the sidecar calls take a fraction of
// that in its own text (docs/benchmarks.md). The list of files and
// instantiations is upstream's src/spdlog.cpp, src/stdout_sinks.cpp and
// fmt's src/format.cc of those versions, plus the part of src/color_sinks.cpp
// that spdlog's registry refers to.

#ifndef SPDLOG_COMPILED_LIB
#error "built only with spdlog::spdlog (SPDLOG_COMPILED_LIB)"
#endif

// fmt (src/format.cc)
#include <fmt/format-inl.h>

FMT_BEGIN_NAMESPACE
namespace detail {
template FMT_API auto dragonbox::to_decimal(float x) noexcept -> dragonbox::decimal_fp<float>;
template FMT_API auto dragonbox::to_decimal(double x) noexcept -> dragonbox::decimal_fp<double>;
template FMT_API locale_ref::locale_ref(const std::locale& loc);
template FMT_API auto locale_ref::get<std::locale>() const -> std::locale;
template FMT_API auto thousands_sep_impl(locale_ref) -> thousands_sep_result<char>;
template FMT_API auto decimal_point_impl(locale_ref) -> char;
template FMT_API void buffer<char>::append(const char*, const char*);
template FMT_API void vformat_to(buffer<char>&, string_view,
                                 basic_format_args<FMT_BUFFER_CONTEXT(char)>, locale_ref);
}  // namespace detail
FMT_END_NAMESPACE

// spdlog (src/spdlog.cpp)
#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/null_mutex.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/spdlog-inl.h>

#include <mutex>

template SPDLOG_API spdlog::logger::logger(std::string name, sinks_init_list::iterator begin,
                                           sinks_init_list::iterator end);
template class SPDLOG_API spdlog::sinks::base_sink<std::mutex>;
template class SPDLOG_API spdlog::sinks::base_sink<spdlog::details::null_mutex>;

// spdlog (src/stdout_sinks.cpp): the stderr sink common/src/logging.cpp uses.
#include <spdlog/sinks/stdout_sinks-inl.h>

template class SPDLOG_API spdlog::sinks::stdout_sink_base<spdlog::details::console_mutex>;
template class SPDLOG_API spdlog::sinks::stderr_sink<spdlog::details::console_mutex>;
template SPDLOG_API std::shared_ptr<spdlog::logger>
spdlog::stderr_logger_mt<spdlog::synchronous_factory>(const std::string& logger_name);

// spdlog (src/color_sinks.cpp): the registry builds its default logger on it.
#include <spdlog/sinks/ansicolor_sink-inl.h>

template class SPDLOG_API spdlog::sinks::ansicolor_sink<spdlog::details::console_mutex>;
template class SPDLOG_API spdlog::sinks::ansicolor_stdout_sink<spdlog::details::console_mutex>;
