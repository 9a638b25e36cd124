"""`python -m flowguard`: the same as the `flowguard` command."""

from flowguard._cli import main

if __name__ == "__main__":
    main()
