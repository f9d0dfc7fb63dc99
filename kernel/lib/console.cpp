#include "kernel/lib/console.hpp"

#include "kernel/lib/format.hpp"
#include "kernel/lib/spinlock.hpp"

namespace console {
namespace {
Sink sink_;
Source source_;
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
void set_source(Source s) { source_ = s; }
bool read_byte(u8 &c) { return source_ && source_(c); }
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

namespace {
void vline(const char *fmt, va_list ap)
{
    char line[256] = "keel: ";
    const usize pre = 6;
    usize n = vformat(line + pre, sizeof(line) - pre - 1, fmt, ap);
    n = min(n + pre, sizeof(line) - 2);
    line[n++] = '\n';
    Guard g(lock_);
    sink_(line, n);
}
} // namespace

void log(Level l, const char *fmt, ...)
{
    if (l > level_ || !sink_) return;
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

void report(bool always, Level l, const char *fmt, ...)
{
    if ((!always && l > level_) || !sink_) return;
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

void reply(const char *fmt, ...)
{
    if (!sink_) return;
    va_list ap;
    va_start(ap, fmt);
    vline(fmt, ap);
    va_end(ap);
}

} // namespace console
