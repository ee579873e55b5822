"""Allow ``python -m timedb``."""

from timedb.cli import main

if __name__ == "__main__":
    main()
