#include "kernel/vdev/uart.hpp"

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
        case 2:                                             // IIR: THRE is the only source; reading clears it
            if ((ier_ & 0x02) && thre_pending_) {
                v = 0x02;
                thre_pending_ = false;
            } else {
                v = 0x01;
            }
            if (fcr_ & 1) v |= 0xc0;                        // FIFOs enabled
            break;
        case 3: v = lcr_; break;
        case 4: v = mcr_; break;
        case 5: v = 0x60; break;                            // LSR: transmitter empty, never busy
        case 6: v = 0xb0; break;                            // MSR: DCD, DSR, CTS
        case 7: v = scr_; break;
        }
        value = v;
        update_irq();
        return true;
    }
    const u8 v = u8(value);
    switch (reg) {
    case 0:
        if (dlab) dll_ = v;
        else {
            put(char(v));
            thre_pending_ = false;                          // the edge a real UART makes: busy, then empty
            update_irq();
            thre_pending_ = true;
        }
        break;
    case 1:
        if (dlab) dlm_ = v;
        else {
            if ((v & 0x02) && !(ier_ & 0x02)) thre_pending_ = true;   // enabling it with THR empty
            ier_ = v & 0x0f;
        }
        break;
    case 2: fcr_ = v & 0xc9; break;
    case 3: lcr_ = v; break;
    case 4: mcr_ = v & 0x1f; break;
    case 7: scr_ = v; break;
    default: break;                                     // read-only registers
    }
    (void)size;
    update_irq();
    return true;
}

void UartModel::update_irq()
{
    const bool level = irq_line();
    if (level == irq_level_) return;
    irq_level_ = level;
    if (irq_) irq_(ctx_, level);
}

void UartModel::put(char c)
{
    if (c == '\r') return;
    if (c == '\n') {
        flush();
        return;
    }
    // Control characters other than tab are shown as '.', so a guest cannot drive Keel's terminal.
    if (len_ >= sizeof(line_)) flush();   // never past the buffer, whatever happened before
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
    } else {
        (void)size;   // the value is already zero-extended from the access width
        p_.request_exit(value);
    }
    return true;
}
