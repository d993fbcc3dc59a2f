"""python -m pyimg"""

from pyimg.cli import main

main()
