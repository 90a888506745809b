from audiosetdl.cli import main

raise SystemExit(main())
