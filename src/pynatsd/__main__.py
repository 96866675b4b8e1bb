"""python -m pynatsd"""

from pynatsd.cli import main

if __name__ == "__main__":
    main()
