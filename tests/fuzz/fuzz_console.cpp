// libFuzzer target for the management console's language (kernel/mgmt): the input
// is the byte stream an operator (or line noise) sends on Keel's serial line.
// Invariants, checked on every line handed out:
//  - a line is 1..MAX_LINE bytes of printable ASCII (no line end, no control byte);
//  - a parsed command's guest name is a non-empty word of that line (no spaces), present
//    exactly for the verbs that take one;
//  - parsing is deterministic and never reads outside the line.
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <vector>

#include "kernel/mgmt/command.hpp"
#include "tests/fuzz/guarded.hpp"

using fuzz::check;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mgmt::LineReader r;
    for (size_t i = 0; i < size; i++) {
        if (r.feed(data[i]) != mgmt::LineReader::Got::line) continue;
        const StrView l = r.line();
        check(l.n >= 1 && l.n <= mgmt::MAX_LINE);
        for (usize k = 0; k < l.n; k++) check(l.p[k] >= 0x20 && l.p[k] <= 0x7e);
        // Parse a copy that ends exactly at the line's end (ASan catches a read past it).
        std::vector<char> copy(l.p, l.p + l.n);
        mgmt::Command c, c2;
        const char *why = mgmt::parse_command({copy.data(), copy.size()}, c);
        check(why == mgmt::parse_command({copy.data(), copy.size()}, c2));
        if (why) continue;
        const bool takes = c.verb == mgmt::Verb::stop || c.verb == mgmt::Verb::start || c.verb == mgmt::Verb::restart ||
                           c.verb == mgmt::Verb::pause || c.verb == mgmt::Verb::resume;
        if (takes) check(!c.guest.empty());
        if (c.verb == mgmt::Verb::help || c.verb == mgmt::Verb::list || c.verb == mgmt::Verb::log) check(c.guest.empty());
        if (!c.guest.empty()) {
            check(c.guest.p >= copy.data() && c.guest.p + c.guest.n <= copy.data() + copy.size());
            check(memchr(c.guest.p, ' ', c.guest.n) == nullptr);
        }
    }
    return 0;
}
