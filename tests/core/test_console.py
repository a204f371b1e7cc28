from rich.console import Console

from nexus_llm.console import table


def test_table_cells_are_text_not_markup():
    """Names, paths and AWS messages may hold ``[...]``: a cell prints as written, numbers formatted."""
    out = Console(record=True, width=120)
    out.print(table("t", ["name", "value"], [("runs[1]/[bold]x[/]", 12345)]))
    text = out.export_text()
    assert "runs[1]/[bold]x[/]" in text and "12,345" in text
