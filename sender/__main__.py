import sys

from latentlink.shared.launch import sender

if __name__ == "__main__":  # not when a worker process imports it
    sys.exit(sender())
