"""python -m pyimg"""

from pyimg.entry import main

main()
