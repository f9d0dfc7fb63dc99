// What became of an NVMe command: the controller's status field decoded
// (4.6.1), or the reason the driver has no status from the controller.
#pragma once

#include "drivers/nvme/spec.hpp"
#include "kernel/lib/result.hpp"

namespace nvme {

// The status field of a completion (CQE DW3 bits 31:17, shifted down by one).
struct StatusField {
    u16 raw = 0;

    u8 sc() const { return u8(raw); }               // status code
    u8 sct() const { return u8(raw >> 8 & 7); }     // status code type
    u8 crd() const { return u8(raw >> 11 & 3); }    // command retry delay index
    bool more() const { return raw >> 13 & 1; }     // more information in the error log
    bool dnr() const { return raw >> 14 & 1; }      // do not retry
    bool success() const { return sct() == SCT_GENERIC && sc() == SC_SUCCESS; }
    // A media and data integrity error (SCT 2): the data on the medium is bad
    // or could not be written, as opposed to a malformed or refused command.
    bool media_error() const { return sct() == SCT_MEDIA; }

    static StatusField make(u8 sct, u8 sc, bool dnr = false)
    {
        return StatusField{u16(sc | (sct & 7) << 8 | (dnr ? 1u << 14 : 0))};
    }
};

// A short lower-case phrase for a log line ("unrecovered read error").
const char *status_text(StatusField s);

// The outcome of one command.
enum class Outcome : u8 {
    ok,             // completed with success
    failed,         // completed with a non-success status (see `status`)
    timed_out,      // no completion within the command timeout: the caller resets the controller
    fatal,          // CSTS.CFS was set: the controller needs a reset
    refused,        // never submitted: see `why` (queue full, too big, not supported, no memory)
};

struct CmdResult {
    Outcome outcome = Outcome::refused;
    StatusField status;   // valid for ok and failed
    u32 dw0 = 0;          // completion dword 0 (command specific), for ok and failed
    Err why = Err::none;  // for refused

    bool ok() const { return outcome == Outcome::ok; }
    static CmdResult refuse(Err e) { return CmdResult{Outcome::refused, {}, 0, e}; }
};

const char *outcome_text(Outcome o);

} // namespace nvme
