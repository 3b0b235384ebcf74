"""What the tests share and nothing else: harnesses that run real daemons, a scripted agent,
polling with a deadline, ports, a fake clock, throwaway users and the CPU hog."""
