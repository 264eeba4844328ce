-- Oracle for the `rfm` feature set (docs: ../shared/design/semantics.md, ./README.md).
--
-- One row per customer in the snapshot at $as_of (signup date <= D), sorted by customer_id.
-- Same conventions as churn_signals.sql: CAST(ts AS DATE) is the UTC calendar date, and
-- nothing dated after D survives the first CTE that reads a table.
--
-- The BTYD columns (frequency, recency, T, monetary_value) are computed here too so that the
-- benchmark's DuckDB run does the whole feature set; make_edge_fixture.py takes those four
-- from lifetimes itself and asserts that this SQL agrees with it (exactly on the edge data,
-- to 1e-12 relative on CDNOW). monetary_value is written as (total of all days - first
-- day) / repeat days, one grouping pass instead of a window over the days: equal to the mean
-- over repeat days up to float rounding, and the form an analyst would give DuckDB.
--
-- Quintile scores (r_score, f_score, m_score):
--   Among the snapshot customers with at least one completed order on or before D (n of
--   them), order from worst to best -- recency_days DESC for r, frequency_orders ASC for f,
--   monetary_total ASC for m -- and take SQL's rank() (min rank: ties share the lowest rank):
--       score = 1 + floor(5 * (rank - 1) / n)          -- 1..5
--   Ties share a score, a better value never scores lower, and about n/5 customers land in
--   each score when values are distinct. NULL for customers without a purchase.
--
-- rfm_segment: first matching rule wins (r = r_score, f = f_score; m_score is not used):
--   Champions r=5 f>=4 | Loyal r>=3 f>=4 | Potential Loyalist r>=4 f in (2,3) | New r=5 f=1 |
--   Promising r=4 f=1 | Needs Attention r=3 f=3 | About to Sleep r=3 f<=2 |
--   Cannot Lose Them r<=2 f=5 | At Risk r<=2 f>=3 | Lost r=1 f=1 | else Hibernating;
--   NULL when r is NULL.
WITH
params AS (SELECT CAST($as_of AS DATE) AS d),

snapshot AS (
    SELECT c.customer_id, p.d
    FROM customers c, params p
    WHERE CAST(c.signup_ts AS DATE) <= p.d
),

-- completed orders of snapshot customers dated on or before D
purchases AS (
    SELECT o.customer_id, CAST(o.order_ts AS DATE) AS dt, o.amount
    FROM orders o, params p
    WHERE o.status = 'completed' AND CAST(o.order_ts AS DATE) <= p.d
      AND o.customer_id IN (SELECT customer_id FROM snapshot)
),

-- BTYD works on purchase days: same-day orders are one purchase whose value is their sum.
-- Classic RFM is aggregated from the same days (the order count rides along), so the orders
-- are grouped once.
purchase_days AS (
    SELECT customer_id, dt, sum(amount) AS day_amount, count(*) AS day_orders
    FROM purchases
    GROUP BY customer_id, dt
),
per_customer AS (
    SELECT customer_id,
           count(*) - 1                                  AS repeat_days,
           min(dt)                                       AS first_dt,
           max(dt)                                       AS last_dt,
           -- the first day's total; arg_min is unambiguous as days are distinct
           arg_min(day_amount, dt)                       AS first_day_amount,
           sum(day_amount)                               AS all_days_amount,
           CAST(sum(day_orders) AS BIGINT)               AS frequency_orders
    FROM purchase_days
    GROUP BY customer_id
),
btyd AS (
    SELECT customer_id,
           CAST(repeat_days AS DOUBLE)                                    AS frequency,
           CAST(last_dt - first_dt AS DOUBLE)                             AS recency,
           CAST(p.d - first_dt AS DOUBLE)                                 AS "T",
           -- mean over repeat days (every day but the first); 0 when there is none
           CASE WHEN repeat_days = 0 THEN 0.0
                ELSE (all_days_amount - first_day_amount) / repeat_days
           END                                                            AS monetary_value
    FROM per_customer, params p
),

classic AS (
    SELECT customer_id,
           p.d - last_dt     AS recency_days,
           frequency_orders,
           all_days_amount   AS monetary_total
    FROM per_customer, params p
),

-- customers without a purchase are absent from `classic`, so n counts purchasers only
scored AS (
    SELECT customer_id,
           1 + (5 * (rank() OVER (ORDER BY recency_days DESC)   - 1)) // n AS r_score,
           1 + (5 * (rank() OVER (ORDER BY frequency_orders ASC) - 1)) // n AS f_score,
           1 + (5 * (rank() OVER (ORDER BY monetary_total ASC)  - 1)) // n AS m_score
    FROM classic, (SELECT count(*) AS n FROM classic) AS cnt
)

SELECT
    s.customer_id,
    s.d                                   AS as_of,
    b.frequency,
    b.recency,
    b."T",
    b.monetary_value,
    c.recency_days,
    coalesce(c.frequency_orders, 0)       AS frequency_orders,
    coalesce(c.monetary_total, 0.0)       AS monetary_total,
    sc.r_score,
    sc.f_score,
    sc.m_score,
    CASE
        WHEN sc.r_score IS NULL                          THEN NULL
        WHEN sc.r_score = 5  AND sc.f_score >= 4         THEN 'Champions'
        WHEN sc.r_score >= 3 AND sc.f_score >= 4         THEN 'Loyal'
        WHEN sc.r_score >= 4 AND sc.f_score IN (2, 3)    THEN 'Potential Loyalist'
        WHEN sc.r_score = 5  AND sc.f_score = 1          THEN 'New'
        WHEN sc.r_score = 4  AND sc.f_score = 1          THEN 'Promising'
        WHEN sc.r_score = 3  AND sc.f_score = 3          THEN 'Needs Attention'
        WHEN sc.r_score = 3  AND sc.f_score <= 2         THEN 'About to Sleep'
        WHEN sc.r_score <= 2 AND sc.f_score = 5          THEN 'Cannot Lose Them'
        WHEN sc.r_score <= 2 AND sc.f_score >= 3         THEN 'At Risk'
        WHEN sc.r_score = 1  AND sc.f_score = 1          THEN 'Lost'
        ELSE 'Hibernating'
    END                                   AS rfm_segment
FROM snapshot s
LEFT JOIN btyd    b  USING (customer_id)
LEFT JOIN classic c  USING (customer_id)
LEFT JOIN scored  sc USING (customer_id)
ORDER BY s.customer_id
