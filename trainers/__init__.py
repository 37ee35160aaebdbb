"""The bundled trl training stage (SFT, DPO, KTO); arrives with its own issue."""
