import sys

from latentlink.shared.launch import receiver

if __name__ == "__main__":  # not when a worker process imports it
    sys.exit(receiver())
