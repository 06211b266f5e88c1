"""What a run shows a person: figures, the HTML feature atlas, tables with units."""
