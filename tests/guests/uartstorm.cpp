// uartstorm: two vCPUs write to the same UART (COM1) at full speed. vCPU 0
// starts vCPU 1 through its local APIC (lib/smp: INIT, then SIPI twice, a
// real-mode trampoline at 0x8000 into 32-bit flat protected mode), which runs
// ap_main on its own stack.
// Then vCPU 0 writes only 'a', vCPU 1 only 'b', each `chars=N` of them
// (default 20000) with a '\n' after every 64 of its own letters and after its
// last one; both flag that they are done, and vCPU 0 prints "uartstorm: done"
// and exits 0. Nothing else is printed during the storm, so the storm's lines
// hold only 'a', 'b' and the line ends: counting them on the console shows
// whether the UART lost or duplicated a character.
//
// cmdline: chars=N, nopoll (write THR without polling LSR.THRE first).
// Exit codes: 0 done; 2 vCPU 1 did not start.
#include "lib/guest.hpp"
#include "lib/smp.hpp"

extern "C" const char guest_name[] = "uartstorm";

namespace {

constexpr u16 COM1 = 0x3f8;

} // namespace

extern "C" {
volatile u32 ap_alive, ap_go, ap_done;
u32 storm_chars;
bool storm_poll;
}

static void storm(char letter) {
    const u32 n = storm_chars;
    for (u32 i = 1; i <= n; ++i) {
        if (storm_poll) {
            putc(letter);
        } else {
            outb(COM1, u8(letter));
        }
        if (i % 64 == 0 || i == n) {
            if (storm_poll) putc('\n');
            else outb(COM1, '\n');
        }
    }
}

extern "C" [[noreturn]] void ap_main() {
    ap_alive = 1;
    while (!ap_go) asm volatile("pause");
    storm('b');
    ap_done = 1;
    for (;;) asm volatile("sti; hlt");   // nothing is sent to it: waits for the guest's end
}

u32 guest_main() {
    storm_chars = u32(cmdline_u64("chars", 20000));
    storm_poll = !cmdline_flag("nopoll");
    printf("uartstorm: chars=%u %s, starting vCPU 1\n", storm_chars, storm_poll ? "polling LSR" : "THR only");

    if (smp::start_ap(1, ap_main))
        for (u32 i = 0; i < 200000000 && !ap_alive; ++i) asm volatile("pause");
    if (!ap_alive) {
        printf("uartstorm: FAIL vCPU 1 did not start\n");
        return 2;
    }
    printf("uartstorm: vCPU 1 is up: storm of %u 'a' (vCPU 0) and %u 'b' (vCPU 1)\n", storm_chars, storm_chars);
    ap_go = 1;
    storm('a');
    while (!ap_done) asm volatile("pause");
    printf("uartstorm: done\n");
    return 0;
}
