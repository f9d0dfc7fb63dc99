// Status decoding (NVMe 1.4, 4.6.1.2).
#include "drivers/nvme/status.hpp"

namespace nvme {

namespace {

const char *generic_text(u8 sc)
{
    switch (sc) {
    case 0x00: return "success";
    case 0x01: return "invalid command opcode";
    case 0x02: return "invalid field in command";
    case 0x03: return "command id conflict";
    case 0x04: return "data transfer error";
    case 0x05: return "aborted: power loss";
    case 0x06: return "internal error";
    case 0x07: return "aborted: requested";
    case 0x08: return "aborted: sq deleted";
    case 0x0b: return "invalid namespace or format";
    case 0x0d: return "invalid sgl or prp";
    case 0x13: return "prp offset invalid";
    case 0x80: return "lba out of range";
    case 0x81: return "capacity exceeded";
    case 0x82: return "namespace not ready";
    }
    return "generic error";
}

const char *command_specific_text(u8 sc)
{
    switch (sc) {
    case 0x00: return "completion queue invalid";
    case 0x01: return "invalid queue identifier";
    case 0x02: return "invalid queue size";
    case 0x08: return "invalid interrupt vector";
    case 0x18: return "namespace already attached";
    case 0x19: return "namespace is private";
    case 0x1a: return "namespace not attached";
    case 0x1c: return "controller list invalid";
    case 0x1f: return "invalid controller identifier";
    case 0x20: return "invalid secondary controller state";
    case 0x21: return "invalid number of controller resources";
    case 0x22: return "invalid resource identifier";
    case 0x80: return "conflicting attributes";
    case 0x82: return "attempted write to read only range";
    }
    return "command specific error";
}

const char *media_text(u8 sc)
{
    switch (sc) {
    case 0x80: return "write fault";
    case 0x81: return "unrecovered read error";
    case 0x82: return "end-to-end guard check error";
    case 0x83: return "end-to-end application tag check error";
    case 0x84: return "end-to-end reference tag check error";
    case 0x85: return "compare failure";
    case 0x86: return "access denied";
    case 0x87: return "deallocated or unwritten logical block";
    }
    return "media error";
}

} // namespace

const char *status_text(StatusField s)
{
    switch (s.sct()) {
    case SCT_GENERIC: return generic_text(s.sc());
    case SCT_COMMAND_SPECIFIC: return command_specific_text(s.sc());
    case SCT_MEDIA: return media_text(s.sc());
    case SCT_PATH: return "path error";
    case SCT_VENDOR: return "vendor specific error";
    }
    return "reserved status type";
}

const char *outcome_text(Outcome o)
{
    switch (o) {
    case Outcome::ok: return "ok";
    case Outcome::failed: return "failed";
    case Outcome::timed_out: return "timed out";
    case Outcome::fatal: return "controller fatal status";
    case Outcome::refused: return "refused";
    }
    return "?";
}

} // namespace nvme
