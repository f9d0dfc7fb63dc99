// Interrupt handlers registered by vector (exceptions are handled in cpu.cpp).
#pragma once

#include "arch/x86_64/cpu.hpp"

using IrqHandler = void (*)(Frame &f);
void register_irq(u8 vector, IrqHandler h);
