# The boot sector nox's KVM probe boots (see src/kvm_probe.rs): from SeaBIOS's real mode to
# protected mode, one interrupt and its iret there (what boot loaders and kernels do at once,
# and what PVM's KVM cannot emulate: "KVM internal error ... emulation failure"), then
# paging and long mode, and finally a write to QEMU's isa-debug-exit port: QEMU exits 3 only
# if all of that ran.
#
# Rebuild (the unit test checks the committed binary against this source when `as` is here):
#   as --32 -o kvm-probe.o kvm-probe.S
#   ld -m elf_i386 -Ttext 0x7c00 --oformat binary -o kvm-probe.bin kvm-probe.o
.code16
.globl _start
_start:
  cli
  xor %ax,%ax
  mov %ax,%ds
  mov %ax,%ss
  mov $0x7c00,%sp
  lgdtl gdt_desc
  mov %cr0,%eax
  or $1,%eax
  mov %eax,%cr0
  ljmpl $0x08,$pm
.code32
pm:
  mov $0x10,%ax
  mov %ax,%ds
  mov %ax,%es
  mov %ax,%ss
  mov $0x7c00,%esp
  lidt idt_desc
  int $0x20
  mov $0x1000,%edi
  xor %eax,%eax
  mov $0xc00,%ecx
  rep stosl
  movl $0x2003,0x1000
  movl $0x3003,0x2000
  movl $0x83,0x3000
  mov %cr4,%eax
  or $0x20,%eax
  mov %eax,%cr4
  mov $0x1000,%eax
  mov %eax,%cr3
  mov $0xC0000080,%ecx
  rdmsr
  or $0x100,%eax
  wrmsr
  mov %cr0,%eax
  or $0x80000000,%eax
  mov %eax,%cr0
  ljmpl $0x18,$lm
handler:
  iret
.code64
lm:
  mov $1,%al
  out %al,$0xf4
1: hlt
  jmp 1b
.align 8
gdt: .quad 0, 0x00cf9a000000ffff, 0x00cf92000000ffff, 0x00af9a000000ffff
gdt_desc: .word 0x1f
  .long gdt
.align 8
idt:
  .fill 0x20, 8, 0
  .word handler
  .word 0x08
  .byte 0
  .byte 0x8e
  .word 0
idt_desc: .word 0x21*8-1
  .long idt
.org 510
.word 0xaa55
