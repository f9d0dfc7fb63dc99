// Keel's log: every line starts with "keel: ", lines are written whole under a
// lock so that CPUs never interleave mid-line, and a level filters the chatter.
#pragma once

#include "kernel/lib/types.hpp"

enum class Level : u8 { error = 0, warn = 1, info = 2, debug = 3 };

namespace console {

using Sink = void (*)(const char *s, usize n);
// Input from the console (non-blocking: false when no byte is waiting).
using Source = bool (*)(u8 &c);

void set_sink(Sink s);
void set_source(Source s);
bool read_byte(u8 &c);
void set_level(Level l);
Level level();
bool parse_level(const char *s, usize n, Level &out);

// Write one log line (a newline is added). Lines longer than the buffer are cut.
void log(Level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
// A line for the operator (the management console's replies): "keel: " before it, whatever the level.
void reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// A log line at level l, or (always) a reply: for reports that are both (statistics).
void report(bool always, Level l, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
// Raw text, no prefix (used for the exception report's continuation lines too).
void write(const char *s, usize n);

} // namespace console

#define log_error(...) console::log(Level::error, __VA_ARGS__)
#define log_warn(...)  console::log(Level::warn, __VA_ARGS__)
#define log_info(...)  console::log(Level::info, __VA_ARGS__)
#define log_debug(...) console::log(Level::debug, __VA_ARGS__)
