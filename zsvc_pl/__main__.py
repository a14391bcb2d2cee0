from zsvc_pl.cli import main

main()
