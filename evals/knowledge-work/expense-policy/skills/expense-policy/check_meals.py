"""Applies the company expense policy to meal receipts (see SKILL.md)."""
import csv, glob, os, sys

CAP = 40.00

def main(folder, out):
    rows = []
    for path in sorted(glob.glob(os.path.join(folder, "*.csv"))):
        for r in csv.DictReader(open(path, newline="", encoding="utf-8")):
            if r["category"] == "meals":
                rows.append((r["date"], r["merchant"], round(float(r["amount"]), 2)))
    rows.sort()
    total = reimb = 0.0
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["date", "merchant", "amount_eur", "over_cap", "reimbursable_eur"])
        for date, merchant, amount in rows:
            paid = min(amount, CAP)
            total, reimb = round(total + amount, 2), round(reimb + paid, 2)
            w.writerow([date, merchant, f"{amount:.2f}", "yes" if amount > CAP else "no", f"{paid:.2f}"])
        w.writerow(["TOTAL", "", f"{total:.2f}", "", f"{reimb:.2f}"])
    flagged = sum(1 for r in rows if r[2] > CAP)
    print(f"{len(rows)} meal receipts, {flagged} over the {CAP:.2f} EUR cap; {reimb:.2f} EUR reimbursable")

if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
