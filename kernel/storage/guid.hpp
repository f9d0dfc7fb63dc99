// GUIDs as GPT stores them (UEFI 2.10, appendix A): 16 bytes whose first three
// fields are little-endian, so the text "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
// is stored 28 73 2a c1 1f f8 d2 11 ba 4b 00 a0 c9 3e c9 3b.
#pragma once

#include "kernel/firmware/cmdline.hpp"
#include "kernel/lib/types.hpp"

struct Guid {
    u8 b[16] = {};

    bool zero() const;
    bool operator==(const Guid &o) const;
};

inline constexpr usize GUID_TEXT = 36;   // "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx"

// Exactly 36 characters, hex digits (either case) and dashes where the format
// has them. False (out untouched) otherwise.
bool parse_guid(StrView s, Guid &out);
// Lower-case text and a NUL: out must hold GUID_TEXT + 1 characters.
void format_guid(const Guid &g, char *out);
