#include "kernel/mgmt/command.hpp"

namespace mgmt {

LineReader::Got LineReader::feed(u8 c)
{
    if (done_) n_ = 0, done_ = false;   // the line handed out last time is over
    if (c == '\r' || c == '\n') {
        const Got got = overflow_ ? Got::too_long : bad_ ? Got::bad_byte : n_ ? Got::line : Got::none;
        if (got == Got::line) done_ = true;
        else n_ = 0;
        overflow_ = bad_ = false;
        return got;
    }
    if (c == 0x08 || c == 0x7f) {
        if (n_ && !overflow_) n_--;
        return Got::none;
    }
    if (c == '\t') c = ' ';
    if (c < 0x20 || c > 0x7e) {
        bad_ = true;
        return Got::none;
    }
    if (n_ == MAX_LINE) {
        overflow_ = true;
        return Got::none;
    }
    buf_[n_++] = char(c);
    return Got::none;
}

namespace {

bool is_space(char c) { return c == ' '; }

// The next word of `s` from `i` (spaces skipped), empty at the end.
StrView word(StrView s, usize &i)
{
    while (i < s.n && is_space(s.p[i])) i++;
    const usize b = i;
    while (i < s.n && !is_space(s.p[i])) i++;
    return {s.p + b, i - b};
}

struct VerbDef {
    const char *name;
    Verb verb;
    enum class Arg : u8 { none, guest, optional_guest, level } arg;
};

constexpr VerbDef VERBS[] = {
    {"help", Verb::help, VerbDef::Arg::none},
    {"list", Verb::list, VerbDef::Arg::none},
    {"stats", Verb::stats, VerbDef::Arg::optional_guest},
    {"stop", Verb::stop, VerbDef::Arg::guest},
    {"start", Verb::start, VerbDef::Arg::guest},
    {"restart", Verb::restart, VerbDef::Arg::guest},
    {"pause", Verb::pause, VerbDef::Arg::guest},
    {"resume", Verb::resume, VerbDef::Arg::guest},
    {"log", Verb::log, VerbDef::Arg::level},
};

} // namespace

const char *const HELP[] = {
    "help              this list",
    "list              guests: state, vCPUs, CPUs, memory, uptime, restarts",
    "stats [GUEST]     statistics lines of every running guest, or of one",
    "stop GUEST        stop it (on_exit and the watchdog do not restart it)",
    "start GUEST       start a stopped guest afresh",
    "restart GUEST     stop it and start it afresh",
    "pause GUEST       its vCPUs stop running (its time and watchdog stand still)",
    "resume GUEST      they run again",
    "log LEVEL         Keel's log level: error, warn, info or debug",
};
const usize HELP_LINES = sizeof(HELP) / sizeof(HELP[0]);

const char *parse_command(StrView line, Command &out)
{
    out = Command{};
    usize i = 0;
    const StrView v = word(line, i);
    const VerbDef *def = nullptr;
    for (const VerbDef &d : VERBS)
        if (v.eq(d.name)) def = &d;
    if (!def) return "unknown command (try help)";
    out.verb = def->verb;
    const StrView arg = word(line, i);
    if (!word(line, i).empty()) return "too many arguments (try help)";
    switch (def->arg) {
    case VerbDef::Arg::none:
        if (!arg.empty()) return "takes no argument";
        return nullptr;
    case VerbDef::Arg::guest:
        if (arg.empty()) return "which guest? (try list)";
        out.guest = arg;
        return nullptr;
    case VerbDef::Arg::optional_guest:
        out.guest = arg;
        return nullptr;
    case VerbDef::Arg::level:
        if (arg.empty() || !console::parse_level(arg.p, arg.n, out.level))
            return "expected error, warn, info or debug";
        return nullptr;
    }
    return "unknown command (try help)";
}

} // namespace mgmt
