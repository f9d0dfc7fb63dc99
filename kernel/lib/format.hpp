// printf-style formatting into a bounded buffer (no libc in the kernel).
// Supports %s %c %d %i %u %x %X %p %% with flags '0' '-', width, precision for
// %s (also '*'), and the length modifiers l, ll, z.
#pragma once

#include <stdarg.h>

#include "kernel/lib/types.hpp"

// Always NUL-terminates when cap > 0. Returns the length the full output would have.
usize vformat(char *buf, usize cap, const char *fmt, va_list ap);
usize format(char *buf, usize cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
