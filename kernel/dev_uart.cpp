#include "dev_uart.hpp"

bool UartModel::io(u16 port, u8 size, bool in, u32 &value)
{
    if (port < base_ || port >= base_ + 8) return false;
    const unsigned reg = port - base_;
    const bool dlab = lcr_ & 0x80;
    if (in) {
        u8 v = 0;
        switch (reg) {
        case 0: v = dlab ? dll_ : 0; break;                 // nothing received
        case 1: v = dlab ? dlm_ : ier_; break;
        case 2: v = 0x01; break;                            // IIR: no interrupt pending
        case 3: v = lcr_; break;
        case 4: v = mcr_; break;
        case 5: v = 0x60; break;                            // LSR: transmitter empty, never busy
        case 6: v = 0xb0; break;                            // MSR: DCD, DSR, CTS
        case 7: v = scr_; break;
        }
        value = v;
        return true;
    }
    const u8 v = u8(value);
    switch (reg) {
    case 0: if (dlab) dll_ = v; else put(char(v)); break;
    case 1: if (dlab) dlm_ = v; else ier_ = v & 0x0f; break;
    case 3: lcr_ = v; break;
    case 4: mcr_ = v & 0x1f; break;
    case 7: scr_ = v; break;
    default: break;                                     // FCR and read-only registers
    }
    (void)size;
    return true;
}

void UartModel::put(char c)
{
    if (c == '\r') return;
    if (c == '\n') {
        flush();
        return;
    }
    // Control characters other than tab are shown as '.', so a guest cannot drive Keel's terminal.
    line_[len_++] = (c == '\t' || (c >= 0x20 && c < 0x7f)) ? c : '.';
    if (len_ == sizeof(line_)) flush();
}

void UartModel::flush()
{
    if (!len_) return;
    sink_(ctx_, line_, len_);
    len_ = 0;
}

bool DebugExitModel::io(u16 port, u8 size, bool in, u32 &value)
{
    if (port != port_) return false;
    if (in) {
        value = ~0u;
    } else if (size == 4) {
        p_.exit_requested = true;
        p_.exit_code = value;
    }
    return true;
}
