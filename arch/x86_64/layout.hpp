// Keel's virtual address layout (x86-64, 4-level paging). Shared by C++ and assembly.
#pragma once

#define KERNEL_VMA        0xffffffff80000000   // kernel image: -2 GiB, phys 0 maps here
#define KERNEL_PHYS       0x200000             // where GRUB loads the image
#define DIRECT_MAP_BASE   0xffff800000000000   // all RAM, RW NX (PML4 slot 256)
#define MMIO_WINDOW_BASE  0xffffc00000000000   // device registers, uncached (PML4 slot 384)
#define MMIO_WINDOW_SIZE  0x0000008000000000   // 512 GiB of virtual space for it

#define BOOT_STACK_SIZE   0x4000
#define CPU_STACK_SIZE    0x4000               // per-CPU kernel stack
#define IST_STACK_SIZE    0x2000               // per-CPU NMI / #DF / #MC stacks

#define SEL_CODE64 0x08
#define SEL_DATA   0x10
#define SEL_TSS    0x18
