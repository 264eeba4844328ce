-- Oracle for the churn label (semantics.md, "Churn label").
-- churned_90d at D = 1 when the customer has no completed order dated in (D, D+90], else 0;
-- one row per snapshot customer (signup date <= D), sorted by customer_id.
-- The caller checks that the orders reach D+90 (the label does not exist otherwise).
WITH
params AS (SELECT CAST($as_of AS DATE) AS d),
snapshot AS (
    SELECT c.customer_id, p.d
    FROM customers c, params p
    WHERE CAST(c.signup_ts AS DATE) <= p.d
),
future_buyers AS (
    SELECT DISTINCT o.customer_id
    FROM orders o, params p
    WHERE o.status = 'completed'
      AND CAST(o.order_ts AS DATE) > p.d
      AND CAST(o.order_ts AS DATE) <= p.d + 90
)
SELECT s.customer_id,
       s.d AS as_of,
       CASE WHEN f.customer_id IS NULL THEN 1 ELSE 0 END AS churned_90d
FROM snapshot s
LEFT JOIN future_buyers f USING (customer_id)
ORDER BY s.customer_id
