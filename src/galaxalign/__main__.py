from galaxalign.cli import main

raise SystemExit(main())
