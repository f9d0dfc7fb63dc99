#include "kernel/lib/console.hpp"

#include "kernel/lib/format.hpp"
#include "kernel/lib/spinlock.hpp"

namespace console {
namespace {
Sink sink_;
Level level_ = Level::info;
Spinlock lock_;

bool eq(const char *s, usize n, const char *lit)
{
    usize i = 0;
    for (; i < n && lit[i]; i++)
        if (s[i] != lit[i]) return false;
    return i == n && !lit[i];
}
} // namespace

void set_sink(Sink s) { sink_ = s; }
void set_level(Level l) { level_ = l; }
Level level() { return level_; }

bool parse_level(const char *s, usize n, Level &out)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    for (unsigned i = 0; i < 4; i++)
        if (eq(s, n, names[i])) { out = Level(i); return true; }
    return false;
}

void write(const char *s, usize n)
{
    if (!sink_) return;
    Guard g(lock_);
    sink_(s, n);
}

void log(Level l, const char *fmt, ...)
{
    if (l > level_ || !sink_) return;
    char line[256] = "keel: ";
    const usize pre = 6;
    va_list ap;
    va_start(ap, fmt);
    usize n = vformat(line + pre, sizeof(line) - pre - 1, fmt, ap);
    va_end(ap);
    n = min(n + pre, sizeof(line) - 2);
    line[n++] = '\n';
    Guard g(lock_);
    sink_(line, n);
}

} // namespace console
