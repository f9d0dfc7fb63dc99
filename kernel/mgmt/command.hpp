// The management console's language: bytes from Keel's serial line gathered
// into lines, and a line parsed into one command. Portable (no hardware, no
// global state): the hypervisor core feeds it (kernel/hv/manage.cpp), the unit
// tests and a fuzzer feed it too.
//
// A line is at most MAX_LINE printable ASCII bytes, ended by CR or LF (a CR LF
// pair is one end). Backspace and DEL remove the last byte. An empty line is
// ignored. A longer line, or one holding another control byte, is refused
// whole at its end: nothing of it is executed.
#pragma once

#include "kernel/firmware/cmdline.hpp"
#include "kernel/lib/console.hpp"
#include "kernel/lib/types.hpp"

namespace mgmt {

constexpr usize MAX_LINE = 120;

class LineReader {
public:
    enum class Got : u8 {
        none,        // keep feeding
        line,        // a complete line: line()
        too_long,    // a line longer than MAX_LINE ended: refused
        bad_byte,    // a line holding a control byte ended: refused
    };

    Got feed(u8 c);
    StrView line() const { return {buf_, n_}; }

private:
    char buf_[MAX_LINE];
    usize n_ = 0;
    bool overflow_ = false, bad_ = false, done_ = false;
};

enum class Verb : u8 { help, list, stats, stop, start, restart, pause, resume, log };

struct Command {
    Verb verb;
    StrView guest;      // stats (optional), stop, start, restart, pause, resume
    Level level;        // log
};

// nullptr on success; otherwise a one-line reason for the operator.
const char *parse_command(StrView line, Command &out);

// One line per command, for `help`.
extern const char *const HELP[];
extern const usize HELP_LINES;

} // namespace mgmt
