/*
 * dlqctl: the operator's tool for the DLQ (placeholder until issue 5 lands;
 * it only exists so the build has its target).
 */
#include <stdio.h>

int main(void)
{
	fputs("dlqctl: not implemented yet\n", stderr);
	return 2;
}
