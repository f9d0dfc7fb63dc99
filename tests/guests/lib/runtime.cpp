// The shared runtime of Keel's test guests (see guest.hpp).
#include "guest.hpp"

extern "C" {
extern u32 entry_eflags, entry_cr0, entry_cr4;
extern u16 entry_cs, entry_ds, entry_ss, entry_es;
extern const u32 isr_table[32];
extern char __image_start[], __image_end[];
}

BootInfo boot;
volatile GpRecord gp_record;
TrapHook trap_hook;

u32 image_start() { return uptr(__image_start); }
u32 image_end() { return uptr(__image_end); }

// ---- freestanding runtime ---------------------------------------------------
extern "C" void* memset(void* dst, int c, usize n) {
    void* d = dst;
    asm volatile("rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
    return dst;
}

extern "C" void* memcpy(void* dst, const void* src, usize n) {
    void* d = dst;
    asm volatile("rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
    return dst;
}

extern "C" int memcmp(const void* a, const void* b, usize n) {
    const u8* x = static_cast<const u8*>(a);
    const u8* y = static_cast<const u8*>(b);
    for (usize i = 0; i < n; ++i)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

usize strlen(const char* s) {
    usize n = 0;
    while (s[n]) ++n;
    return n;
}

bool streq(const char* a, const char* b) {
    while (*a && *a == *b) ++a, ++b;
    return *a == *b;
}

// 64-bit division for i386 (no compiler-rt: -nostdlib).
static u64 udivmod64(u64 n, u64 d, u64* rem) {
    if (d == 0) {                       // never on purpose; do not trap
        if (rem) *rem = 0;
        return ~0ull;
    }
    if ((n >> 32) == 0 && (d >> 32) == 0) {
        u32 q = u32(n) / u32(d);
        if (rem) *rem = u32(n) % u32(d);
        return q;
    }
    u64 q = 0, r = 0;
    for (int i = 63; i >= 0; --i) {
        r = (r << 1) | ((n >> i) & 1);
        if (r >= d) {
            r -= d;
            q |= 1ull << i;
        }
    }
    if (rem) *rem = r;
    return q;
}

extern "C" u64 __udivdi3(u64 n, u64 d) { return udivmod64(n, d, nullptr); }
extern "C" u64 __umoddi3(u64 n, u64 d) {
    u64 r;
    udivmod64(n, d, &r);
    return r;
}
extern "C" u64 __udivmoddi4(u64 n, u64 d, u64* rem) { return udivmod64(n, d, rem); }
extern "C" i64 __divdi3(i64 n, i64 d) {
    bool neg = (n < 0) != (d < 0);
    u64 q = udivmod64(n < 0 ? -u64(n) : u64(n), d < 0 ? -u64(d) : u64(d), nullptr);
    return neg ? -i64(q) : i64(q);
}
extern "C" i64 __moddi3(i64 n, i64 d) {
    u64 r;
    udivmod64(n < 0 ? -u64(n) : u64(n), d < 0 ? -u64(d) : u64(d), &r);
    return n < 0 ? -i64(r) : i64(r);
}

// ---- console ----------------------------------------------------------------
static constexpr u16 kCom1 = 0x3F8;
static constexpr u16 kLsr = kCom1 + 5;
static constexpr u8 kLsrThre = 1 << 5;

void putc(char c) {
    // Bounded wait for "transmit holding register empty" (an absent UART reads 0xFF).
    for (u32 i = 0; i < 1000000 && !(inb(kLsr) & kLsrThre); ++i)
        asm volatile("pause");
    outb(kCom1, u8(c));
}

void puts(const char* s) {
    while (*s) putc(*s++);
}

static void put_u64(u64 v, u32 base, bool upper, int width, bool zero, bool left) {
    char buf[24];
    int n = 0;
    const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    do {
        u64 r;
        v = udivmod64(v, base, &r);
        buf[n++] = digits[r];
    } while (v);
    int pad = width > n ? width - n : 0;
    if (!left)
        for (int i = 0; i < pad; ++i) putc(zero ? '0' : ' ');
    while (n) putc(buf[--n]);
    if (left)
        for (int i = 0; i < pad; ++i) putc(' ');
}

static void vprintf(const char* fmt, __builtin_va_list ap) {
    for (; *fmt; ++fmt) {
        if (*fmt != '%') {
            putc(*fmt);
            continue;
        }
        ++fmt;
        bool zero = false, left = false;
        for (;; ++fmt) {
            if (*fmt == '0') zero = true;
            else if (*fmt == '-') left = true;
            else break;
        }
        int width = 0;
        while (*fmt >= '0' && *fmt <= '9') width = width * 10 + (*fmt++ - '0');
        int longs = 0;
        while (*fmt == 'l') ++longs, ++fmt;
        switch (*fmt) {
        case 'd':
        case 'i': {
            i64 v = longs >= 2 ? __builtin_va_arg(ap, i64) : i64(__builtin_va_arg(ap, int));
            if (v < 0) {
                putc('-');
                if (width) --width;
                put_u64(-u64(v), 10, false, width, zero, left);
            } else {
                put_u64(u64(v), 10, false, width, zero, left);
            }
            break;
        }
        case 'u':
        case 'x':
        case 'X': {
            u64 v = longs >= 2 ? __builtin_va_arg(ap, u64) : u64(__builtin_va_arg(ap, unsigned));
            put_u64(v, *fmt == 'u' ? 10 : 16, *fmt == 'X', width, zero, left);
            break;
        }
        case 'p':
            puts("0x");
            put_u64(u64(uptr(__builtin_va_arg(ap, void*))), 16, false, 8, true, false);
            break;
        case 'c':
            putc(char(__builtin_va_arg(ap, int)));
            break;
        case 's': {
            const char* s = __builtin_va_arg(ap, const char*);
            if (!s) s = "(null)";
            int n = int(strlen(s));
            if (!left)
                for (int i = n; i < width; ++i) putc(' ');
            puts(s);
            if (left)
                for (int i = n; i < width; ++i) putc(' ');
            break;
        }
        case '%':
            putc('%');
            break;
        case '\0':
            return;
        default:
            putc('%');
            putc(*fmt);
            break;
        }
    }
}

void printf(const char* fmt, ...) {
    __builtin_va_list ap;
    __builtin_va_start(ap, fmt);
    vprintf(fmt, ap);
    __builtin_va_end(ap);
}

[[noreturn]] void exit(u32 code) {
    outl(0xF4, code);
    printf("%s: the debug-exit port 0xf4 did not end the guest (code=%u); halting\n", guest_name, code);
    for (;;) asm volatile("cli; hlt");
}

// ---- checks -----------------------------------------------------------------
bool Checks::check(bool ok, const char* what, const char* detail_fmt, ...) {
    ++number;
    printf("%s: [%u] %s %s", guest_name, number, ok ? "ok  " : "FAIL", what);
    if (detail_fmt) {
        puts(": ");
        __builtin_va_list ap;
        __builtin_va_start(ap, detail_fmt);
        vprintf(detail_fmt, ap);
        __builtin_va_end(ap);
    }
    putc('\n');
    if (!ok) {
        ++failed;
        if (!first_failed) first_failed = number;
    }
    return ok;
}

u32 Checks::finish() const {
    if (failed == 0)
        printf("%s: PASS (%u checks)\n", guest_name, number);
    else
        printf("%s: FAIL (%u of %u checks failed, first #%u)\n", guest_name, failed, number, first_failed);
    return exit_code();
}

// ---- command line -----------------------------------------------------------
static bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

bool cmdline_value(const char* key, const char** value, usize* len) {
    usize klen = strlen(key);
    bool found = false;
    const char* p = boot.cmdline;
    while (*p) {
        while (is_space(*p)) ++p;
        const char* w = p;
        while (*p && !is_space(*p)) ++p;
        usize wlen = usize(p - w);
        if (wlen > klen && w[klen] == '=' && memcmp(w, key, klen) == 0) {
            *value = w + klen + 1;            // the last occurrence wins
            *len = wlen - klen - 1;
            found = true;
        }
    }
    return found;
}

bool cmdline_flag(const char* word) {
    usize klen = strlen(word);
    const char* p = boot.cmdline;
    while (*p) {
        while (is_space(*p)) ++p;
        const char* w = p;
        while (*p && !is_space(*p)) ++p;
        if (usize(p - w) == klen && memcmp(w, word, klen) == 0) return true;
    }
    const char* v;
    usize len;
    if (!cmdline_value(word, &v, &len)) return false;
    auto is = [&](const char* s) { return strlen(s) == len && memcmp(v, s, len) == 0; };
    return is("1") || is("yes") || is("on") || is("true");
}

bool parse_u64(const char* s, usize len, u64* out) {
    u32 base = 10;
    usize i = 0;
    if (len > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
        base = 16;
        i = 2;
    }
    u64 v = 0;
    usize digits = 0;
    for (; i < len; ++i, ++digits) {
        char c = s[i];
        u32 d;
        if (c >= '0' && c <= '9') d = u32(c - '0');
        else if (base == 16 && c >= 'a' && c <= 'f') d = u32(c - 'a' + 10);
        else if (base == 16 && c >= 'A' && c <= 'F') d = u32(c - 'A' + 10);
        else break;
        if (v > udivmod64(~0ull - d, base, nullptr)) return false;   // overflow
        v = v * base + d;
    }
    if (digits == 0) return false;
    if (i < len) {
        u32 shift;
        switch (s[i]) {
        case 'k': case 'K': shift = 10; break;
        case 'm': case 'M': shift = 20; break;
        case 'g': case 'G': shift = 30; break;
        default: return false;
        }
        if (++i != len || (v >> (64 - shift))) return false;
        v <<= shift;
    }
    *out = v;
    return true;
}

u64 cmdline_u64(const char* key, u64 fallback) {
    const char* v;
    usize len;
    if (!cmdline_value(key, &v, &len)) return fallback;
    u64 out;
    if (parse_u64(v, len, &out)) return out;
    printf("%s: warning: cannot parse %s=", guest_name, key);
    for (usize i = 0; i < len; ++i) putc(v[i]);
    printf(", using 0x%llx\n", fallback);
    return fallback;
}

// ---- exceptions -------------------------------------------------------------
static const char* const kVectorNames[32] = {
    "#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "15",
    "#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "22",  "23",  "24",  "25",  "26",  "27",  "#HV", "#VC", "#SX", "31"};

extern "C" void trap_entry(TrapFrame* f) {
    if (trap_hook && trap_hook(f)) return;
    if (f->vector == 13) {
        const u8* insn = reinterpret_cast<const u8*>(f->eip);
        if (insn[0] == 0x0F && (insn[1] == 0x30 || insn[1] == 0x32)) {   // wrmsr / rdmsr
            gp_record.count = gp_record.count + 1;
            gp_record.last_error = f->error;
            gp_record.last_eip = f->eip;
            f->eip += 2;
            return;
        }
    }
    u32 cr2;
    asm volatile("movl %%cr2, %0" : "=r"(cr2));
    printf("%s: unexpected exception %s vector=%u error=0x%x eip=0x%08x cr2=0x%08x\n", guest_name,
           kVectorNames[f->vector & 31], f->vector, f->error, f->eip, cr2);
    printf("%s:   eax=0x%08x ebx=0x%08x ecx=0x%08x edx=0x%08x esi=0x%08x edi=0x%08x ebp=0x%08x eflags=0x%08x\n",
           guest_name, f->eax, f->ebx, f->ecx, f->edx, f->esi, f->edi, f->ebp, f->eflags);
    exit(kExitUnexpectedException | f->vector);
}

struct [[gnu::packed]] IdtGate {
    u16 offset_lo, selector;
    u8 zero, type;
    u16 offset_hi;
};
struct [[gnu::packed]] IdtDescriptor {
    u16 limit;
    u32 base;
};
alignas(8) static IdtGate idt[32];

static void idt_init() {
    for (u32 v = 0; v < 32; ++v) {
        u32 h = isr_table[v];
        idt[v] = IdtGate{u16(h), 0x08, 0, 0x8E, u16(h >> 16)};   // 32-bit interrupt gate, DPL 0
    }
    IdtDescriptor d{sizeof(idt) - 1, uptr(idt)};
    asm volatile("lidt %0" : : "m"(d));
}

// ---- boot information -------------------------------------------------------
template <typename T>
static T read_phys(u32 addr) {
    T v;
    memcpy(&v, reinterpret_cast<const void*>(addr), sizeof(T));
    return v;
}

static void read_boot_info(u32 magic, u32 mbi) {
    boot.magic = magic;
    boot.mbi_addr = mbi;
    boot.entry_eflags = entry_eflags;
    boot.entry_cr0 = entry_cr0;
    boot.entry_cr4 = entry_cr4;
    boot.entry_cs = entry_cs;
    boot.entry_ds = entry_ds;
    boot.entry_ss = entry_ss;
    boot.entry_es = entry_es;
    if (magic != kMultibootMagic || mbi == 0) return;

    boot.mbi_size = 52;                      // up to and including mmap_addr
    boot.flags = read_phys<u32>(mbi + 0);
    if (boot.flags & (1u << 0)) {
        boot.has_mem = true;
        boot.mem_lower_kib = read_phys<u32>(mbi + 4);
        boot.mem_upper_kib = read_phys<u32>(mbi + 8);
    }
    if (boot.flags & (1u << 2)) {
        boot.has_cmdline = true;
        boot.cmdline_addr = read_phys<u32>(mbi + 16);
        if (boot.cmdline_addr) {
            const char* s = reinterpret_cast<const char*>(boot.cmdline_addr);
            usize i = 0;
            for (; i + 1 < sizeof(boot.cmdline) && s[i]; ++i) boot.cmdline[i] = s[i];
            boot.cmdline[i] = 0;
        }
    }
    if (boot.flags & (1u << 6)) {
        boot.has_mmap = true;
        boot.mmap_length = read_phys<u32>(mbi + 44);
        boot.mmap_addr = read_phys<u32>(mbi + 48);
        u32 p = boot.mmap_addr;
        u32 end = boot.mmap_addr + boot.mmap_length;
        while (p + 24 <= end) {
            u32 size = read_phys<u32>(p);
            if (size < 20) break;
            if (boot.mmap_count == sizeof(boot.mmap) / sizeof(boot.mmap[0])) {
                boot.mmap_truncated = true;
                break;
            }
            MemRegion& r = boot.mmap[boot.mmap_count++];
            r.base = read_phys<u64>(p + 4);
            r.length = read_phys<u64>(p + 12);
            r.type = read_phys<u32>(p + 20);
            p += size + 4;
        }
    }
}

// `fault=ud|de|bp|gp` on any guest's command line: take that exception
// before guest_main (the report and exit code 0xEE00|vector show that the
// guest's own IDT got it).
static void take_fault_if_asked() {
    const char* v;
    usize len;
    if (!cmdline_value("fault", &v, &len)) return;
    auto is = [&](const char* s) { return strlen(s) == len && memcmp(v, s, len) == 0; };
    printf("%s: taking fault=", guest_name);
    for (usize i = 0; i < len; ++i) putc(v[i]);
    putc('\n');
    if (is("ud")) asm volatile("ud2");
    if (is("bp")) asm volatile("int3");
    if (is("de")) {
        u32 zero = 0;
        asm volatile("divl %2" : "+a"(zero) : "d"(0), "r"(zero));
    }
    if (is("gp")) asm volatile("movw %w0, %%fs" : : "r"(0x7ff8));   // beyond our GDT's limit: #GP(0x7ff8)
    printf("%s: fault=... not taken (unknown fault name?)\n", guest_name);
}

extern "C" [[noreturn]] void runtime_start(u32 magic, u32 mbi) {
    // First of all: mask both 8259s. Bare under QEMU, SeaBIOS leaves the master's IRQ0 (the PIT)
    // unmasked on vector 8, so a guest that enables interrupts would take the PIT as "#DF"
    // (guests.bare.timer failed that way under load); no guest asks for a legacy PIC interrupt.
    // Under Keel the 8259 pair is emulated, masked from the start, and delivers nothing.
    outb(0x21, 0xff);
    outb(0xa1, 0xff);
    idt_init();
    printf("%s: start\n", guest_name);
    read_boot_info(magic, mbi);
    if (magic != kMultibootMagic) {
        printf("%s: FAIL bad multiboot magic eax=0x%08x (expected 0x%08x)\n", guest_name, magic, kMultibootMagic);
        exit(kExitBadMagic);
    }
    take_fault_if_asked();
    exit(guest_main());
}
