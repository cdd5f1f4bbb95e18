// loop spins forever without making any system call.
volatile unsigned long counter;

int main(void) {
	for (;;) counter++;
}
